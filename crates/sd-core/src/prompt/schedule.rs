//! A1111's prompt editing `[from:to:when]` and alternation `[a|b]`
//! (`modules/prompt_parser.py::get_learned_conditioning_prompt_schedules`, 1.10, no hires pass): a prompt becomes
//! a list of `(end_at_step, text)`; sampler step `i` (from 0) uses the first entry with `i <= end_at_step`.
//!
//! A1111 parses with a lark Earley grammar; this is a recursive-descent parser for the same grammar. At the top
//! level a bracket that does not open a valid group is literal text (the grammar's `/[][():]/+` alternative);
//! a prompt the grammar rejects (a `|` outside `[...]`, a lone trailing `\`) is used unscheduled, as A1111 does.

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    /// `(inner)`, `(inner:second)` or `[inner]`: kept literally, emphasis is parsed later.
    Emphasized {
        open: char,
        inner: Vec<Node>,
        second: Option<Vec<Node>>,
        close: char,
    },
    Scheduled {
        before: Option<Vec<Node>>,
        after: Vec<Node>,
        number: String,
    },
    Alternate(Vec<Vec<Node>>),
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

type Parsed<T> = Option<T>;

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// `prompt`: text and groups up to (not including) an unmatched `]`, `)`, `:` or `|`.
    fn prompt(&mut self) -> Parsed<Vec<Node>> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    let next = self.chars.get(self.pos + 1).copied()?;
                    text.push('\\');
                    text.push(next);
                    self.pos += 2;
                }
                '(' | '[' => {
                    if !text.is_empty() {
                        nodes.push(Node::Text(std::mem::take(&mut text)));
                    }
                    nodes.push(self.group()?);
                }
                ']' | ')' | ':' | '|' => break,
                _ => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Some(nodes)
    }

    /// A group starting at `(` or `[`; `None` when it is not valid there.
    fn group(&mut self) -> Parsed<Node> {
        let open = self.peek()?;
        self.pos += 1;
        let mut parts = vec![self.prompt()?];
        let mut seps = Vec::new();
        loop {
            match self.peek()? {
                c @ (':' | '|') => {
                    seps.push(c);
                    self.pos += 1;
                    parts.push(self.prompt()?);
                }
                c => {
                    self.pos += 1;
                    return build_group(open, c, parts, &seps);
                }
            }
        }
    }

    /// `start`: prompts, with brackets and colons that open no valid group taken literally.
    fn start(&mut self) -> Parsed<Vec<Node>> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    let next = self.chars.get(self.pos + 1).copied()?;
                    text.push('\\');
                    text.push(next);
                    self.pos += 2;
                }
                '(' | '[' => {
                    let save = self.pos;
                    match self.group() {
                        Some(node) => {
                            if !text.is_empty() {
                                nodes.push(Node::Text(std::mem::take(&mut text)));
                            }
                            nodes.push(node);
                        }
                        None => {
                            self.pos = save + 1;
                            text.push(c);
                        }
                    }
                }
                '|' => return None,
                _ => {
                    text.push(c);
                    self.pos += 1;
                }
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Some(nodes)
    }
}

fn is_number(text: &str) -> bool {
    // lark's SIGNED_NUMBER: [+-]? (INT exp | DECIMAL exp?) | INT, DECIMAL = INT "." INT? | "." INT.
    let t = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => (digits(a) && (b.is_empty() || digits(b))) || (a.is_empty() && digits(b)),
        None => digits(mantissa),
    };
    let exp_ok = exp.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exp_ok
}

fn plain_text(nodes: &[Node]) -> Option<String> {
    match nodes {
        [] => Some(String::new()),
        [Node::Text(t)] => Some(t.clone()),
        _ => None,
    }
}

fn build_group(open: char, close: char, mut parts: Vec<Vec<Node>>, seps: &[char]) -> Parsed<Node> {
    match (open, close) {
        ('(', ')') if seps.is_empty() || seps == [':'] => {
            let second = (parts.len() == 2).then(|| parts.pop()).flatten();
            let inner = parts.pop()?;
            Some(Node::Emphasized {
                open,
                inner,
                second,
                close,
            })
        }
        ('[', ']') if seps.is_empty() => Some(Node::Emphasized {
            open,
            inner: parts.pop()?,
            second: None,
            close,
        }),
        ('[', ']') if seps.iter().all(|&s| s == ':') && (2..=3).contains(&parts.len()) => {
            let number = plain_text(parts.last()?)?;
            let trimmed = number.trim();
            if !is_number(trimmed) {
                return None;
            }
            let number = trimmed.to_string();
            parts.pop();
            let after = parts.pop()?;
            let before = parts.pop();
            Some(Node::Scheduled {
                before,
                after,
                number,
            })
        }
        ('[', ']') if seps.iter().all(|&s| s == '|') => Some(Node::Alternate(parts)),
        _ => None,
    }
}

fn collect_steps(nodes: &[Node], steps: i64, out: &mut Vec<i64>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Emphasized { inner, second, .. } => {
                collect_steps(inner, steps, out);
                if let Some(s) = second {
                    collect_steps(s, steps, out);
                }
            }
            Node::Scheduled {
                before,
                after,
                number,
            } => {
                let when = when_step(number, steps);
                if when >= 1 {
                    out.push(when);
                }
                if let Some(b) = before {
                    collect_steps(b, steps, out);
                }
                collect_steps(after, steps, out);
            }
            Node::Alternate(options) => {
                out.extend(1..=steps);
                for o in options {
                    collect_steps(o, steps, out);
                }
            }
        }
    }
}

/// `min(steps, int(v))`, with `v` a fraction of the steps when the number has a `.`.
fn when_step(number: &str, steps: i64) -> i64 {
    let v: f64 = number.parse().unwrap_or(0.0);
    let v = if number.contains('.') {
        v * steps as f64
    } else {
        v
    };
    (v.trunc() as i64).min(steps)
}

fn at_step(nodes: &[Node], step: i64, steps: i64, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Emphasized {
                open,
                inner,
                second,
                close,
            } => {
                out.push(*open);
                at_step(inner, step, steps, out);
                if let Some(s) = second {
                    out.push(':');
                    at_step(s, step, steps, out);
                }
                out.push(*close);
            }
            Node::Scheduled {
                before,
                after,
                number,
            } => {
                if step <= when_step(number, steps) {
                    if let Some(b) = before {
                        at_step(b, step, steps, out);
                    }
                } else {
                    at_step(after, step, steps, out);
                }
            }
            Node::Alternate(options) => {
                let i = ((step - 1).rem_euclid(options.len() as i64)) as usize;
                at_step(&options[i], step, steps, out);
            }
        }
    }
}

/// `[(end_at_step, text)]` for `prompt` sampled in `steps` steps.
pub fn prompt_schedule(prompt: &str, steps: usize) -> Vec<(usize, String)> {
    let steps = steps as i64;
    let mut parser = Parser {
        chars: prompt.chars().collect(),
        pos: 0,
    };
    let Some(tree) = parser.start() else {
        return vec![(steps as usize, prompt.to_string())];
    };
    let mut ends = vec![steps];
    collect_steps(&tree, steps, &mut ends);
    ends.sort_unstable();
    ends.dedup();
    ends.into_iter()
        .map(|t| {
            let mut text = String::new();
            at_step(&tree, t, steps, &mut text);
            (t as usize, text)
        })
        .collect()
}

/// The entry of `schedule` that sampler step `step` (from 0) uses, as A1111's `reconstruct_cond_batch`.
pub fn entry_at(schedule_ends: &[usize], step: usize) -> usize {
    schedule_ends
        .iter()
        .position(|&end| step <= end)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(prompt: &str, steps: usize) -> Vec<(usize, String)> {
        prompt_schedule(prompt, steps)
    }

    fn v(items: &[(usize, &str)]) -> Vec<(usize, String)> {
        items.iter().map(|(n, t)| (*n, t.to_string())).collect()
    }

    // The examples from A1111's docstring.
    #[test]
    fn a1111_docstring_examples() {
        assert_eq!(s("test", 10), v(&[(10, "test")]));
        assert_eq!(s("a [b:3]", 10), v(&[(3, "a "), (10, "a b")]));
        assert_eq!(s("a [b: 3]", 10), v(&[(3, "a "), (10, "a b")]));
        assert_eq!(s("a [[[b]]:2]", 10), v(&[(2, "a "), (10, "a [[b]]")]));
        assert_eq!(s("[(a:2):3]", 10), v(&[(3, ""), (10, "(a:2)")]));
        assert_eq!(
            s("a [b : c : 1] d", 10),
            v(&[(1, "a b  d"), (10, "a  c  d")])
        );
        assert_eq!(
            s("a[b:[c:d:2]:1]e", 10),
            v(&[(1, "abe"), (2, "ace"), (10, "ade")])
        );
        assert_eq!(s("a [unbalanced", 10), v(&[(10, "a [unbalanced")]));
        assert_eq!(s("a [b:.5] c", 10), v(&[(5, "a  c"), (10, "a b c")]));
        assert_eq!(s("a [{b|d{:.5] c", 10), v(&[(10, "a [{b|d{:.5] c")]));
        assert_eq!(
            s("((a][:b:c [d:3]", 10),
            v(&[(3, "((a][:b:c "), (10, "((a][:b:c d")])
        );
        assert_eq!(
            s("[a|(b:1.1)]", 3),
            v(&[(1, "a"), (2, "(b:1.1)"), (3, "a")])
        );
        assert_eq!(
            s("[fe|]male", 3),
            v(&[(1, "female"), (2, "male"), (3, "female")])
        );
        assert_eq!(
            s("[fe|||]male", 5),
            v(&[
                (1, "female"),
                (2, "male"),
                (3, "male"),
                (4, "male"),
                (5, "female")
            ])
        );
        assert_eq!(entry_at(&[3, 10], 0), 0);
        assert_eq!(entry_at(&[3, 10], 3), 0);
        assert_eq!(entry_at(&[3, 10], 4), 1);
    }
}
