//! Attestation of a token key by the SE050 that holds it, and its verification on a server
//! that has no chip, token or module.
//!
//! The device side (`wg-pkcs11 attest`) writes an [`evidence::Evidence`] file: the WireGuard
//! public key, the attested ReadObject command and the chip's answer exactly as exchanged, and
//! the chip's certificate chain. The server side (`wg-pkcs11 verify-attestation`, `admit`)
//! checks it with [`verify::verify`] against configured roots and a single-use nonce
//! ([`nonce_store`]).
//!
//! Sources for the chip's formats (NXP/plug-and-trust, commit 9721d640):
//! `hostlib/hostLib/se05x_03_xx_xx/se05x_APDU_impl.h` `Se05x_API_ReadObject_W_Attst` (applet
//! 3.x) and `Se05x_API_ReadObject_W_Attst_V2` (applet 7.x), `sss/src/se05x/fsl_sss_se05x_apis.c`
//! `nxECKey_ReadEckaPublicKey` + `nxECKey_VerifyAttestation` (what the signature covers),
//! `sss/src/se05x/fsl_sss_se05x_mw.c` `add_taglength_to_data` (7.x: 82 HH LL lengths),
//! `hostlib/hostLib/inc/se05x_const.h` (policy bits), `se05x_enums.h` (tags, origins).

pub mod chain;
pub mod chip_response;
pub mod evidence;
pub mod nonce_store;
pub mod object_attributes;
pub mod refusal;
pub mod roots;
pub mod token_blob;
pub mod verify;

#[cfg(test)]
mod test_chip;
#[cfg(test)]
mod verify_tests;

pub use evidence::Evidence;
pub use refusal::Refusal;
pub use verify::{verify, Verified, VerifyOptions};
