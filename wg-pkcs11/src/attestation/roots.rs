//! NXP's public certificates for SE050 attestation, shipped with wg-pkcs11 (`wg-pkcs11/roots/`):
//! the root "NXP RootCAvE506" and the intermediate "NXP Intermediate-AttestationCAvE206" that
//! issues each chip's attestation certificate. Source: NXP's CA service, linked from AN12436
//! section 3.11.3 (caid 63709315050002 and 63709315060003); the same DER files are pinned in
//! Worldcoin's orb-software (`se050/pinned_nxp_certs/`). SHA-256 fingerprints (of the DER):
//! root `04811915CE7DA2DA2ED18BF2135622AE49A4A81B2F69F8D433A73E3F24EC1B0B`,
//! intermediate `F35796D8A794CEAE69DDEC2316A540A0D0A54B3CE8B16DE00B205F0D65AA40E7`.
//!
//! The root is trusted only when no `--root` is given; the intermediate is never trusted by
//! itself, it only completes a chain a chip holds without it.

use super::chain::Cert;
use super::Refusal;

pub const NXP_ROOT_PEM: &str = include_str!("../../roots/nxp-rootcave506.pem");
pub const NXP_INTERMEDIATE_PEM: &str =
    include_str!("../../roots/nxp-intermediate-attestationcave206.pem");

pub fn nxp_roots() -> Vec<Cert> {
    Cert::from_pem(NXP_ROOT_PEM).expect("the shipped NXP root parses")
}

pub fn nxp_intermediates() -> Vec<Cert> {
    Cert::from_pem(NXP_INTERMEDIATE_PEM).expect("the shipped NXP intermediate parses")
}

/// Roots from PEM files given with `--root`.
pub fn load_roots(paths: &[std::path::PathBuf]) -> Result<Vec<Cert>, String> {
    let mut roots = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read root {}: {e}", path.display()))?;
        let certs =
            Cert::from_pem(&text).map_err(|e: Refusal| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", path.display()));
        }
        roots.extend(certs);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    #[test]
    fn shipped_certificates_are_the_documented_ones() {
        let root = super::nxp_roots();
        let inter = super::nxp_intermediates();
        let hex = |d: &[u8]| super::super::evidence::hex(&Sha256::digest(d)).to_uppercase();
        assert_eq!(
            hex(&root[0].der),
            "04811915CE7DA2DA2ED18BF2135622AE49A4A81B2F69F8D433A73E3F24EC1B0B"
        );
        assert_eq!(
            hex(&inter[0].der),
            "F35796D8A794CEAE69DDEC2316A540A0D0A54B3CE8B16DE00B205F0D65AA40E7"
        );
        assert!(root[0].subject().contains("NXP RootCAvE506"));
    }
}
