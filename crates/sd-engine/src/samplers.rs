//! Sampler names the API accepts and advertises: the core's [`SamplerKind`] names, which parse also takes in
//! A1111's display names and aliases, case-insensitively.

use sd_core::schedulers::SamplerKind;

/// Our sampler names, as `/v1/info` lists them.
pub fn sampler_names() -> Vec<&'static str> {
    SamplerKind::all().iter().map(|kind| kind.name()).collect()
}

pub fn parse_sampler(name: &str) -> Option<SamplerKind> {
    SamplerKind::parse(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_name_parses_and_a1111_names_too() {
        let names = sampler_names();
        assert_eq!(names.len(), 9);
        for name in names {
            assert!(parse_sampler(name).is_some(), "{name}");
        }
        assert_eq!(parse_sampler("Euler a"), Some(SamplerKind::EulerAncestral));
        assert_eq!(
            parse_sampler("DPM++ 2M Karras"),
            Some(SamplerKind::DpmPp2MKarras)
        );
        assert_eq!(parse_sampler("bogus"), None);
    }
}
