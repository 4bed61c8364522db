//! Sampler names the API accepts, mapped to the core's [`SamplerKind`]. Our names and A1111's display names,
//! case-insensitively. (Delegate to `SamplerKind::parse` once the core exposes it, keeping this list as the
//! one the API advertises.)

use sd_core::schedulers::SamplerKind;

/// Our sampler names, as `/v1/info` lists them.
pub const SAMPLER_NAMES: [&str; 9] = [
    "ddim",
    "pndm",
    "euler",
    "euler_a",
    "heun",
    "dpmpp_2m",
    "dpmpp_2m_karras",
    "unipc",
    "lcm",
];

pub fn parse_sampler(name: &str) -> Option<SamplerKind> {
    let name = name.trim().to_ascii_lowercase();
    let kind = match name.as_str() {
        "ddim" => SamplerKind::Ddim,
        "pndm" | "plms" => SamplerKind::Pndm,
        "euler" => SamplerKind::Euler,
        "euler_a" | "euler a" | "euler_ancestral" => SamplerKind::EulerAncestral,
        "heun" => SamplerKind::Heun,
        "dpmpp_2m" | "dpm++ 2m" => SamplerKind::DpmPp2M,
        "dpmpp_2m_karras" | "dpm++ 2m karras" => SamplerKind::DpmPp2MKarras,
        "unipc" => SamplerKind::UniPc,
        "lcm" => SamplerKind::Lcm,
        _ => return None,
    };
    Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_name_parses_and_a1111_names_too() {
        for name in SAMPLER_NAMES {
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
