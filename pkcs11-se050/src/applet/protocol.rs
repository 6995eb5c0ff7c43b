//! The IoT applet's command bytes (AN12413), shared by the host driver and the virtual chip.

use crate::apdu::CommandApdu;

/// AID of the IoT applet.
pub const IOT_APPLET_AID: [u8; 16] = [
    0xA0, 0x00, 0x00, 0x03, 0x96, 0x54, 0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00,
];

/// SELECT of the IoT applet by AID (answered by its version and feature bits): the one the
/// driver sends when it opens the chip and again after a reset lost the selection.
pub fn select_command() -> CommandApdu {
    CommandApdu::new(
        CLA_ISO,
        INS_SELECT,
        0x04,
        0x00,
        IOT_APPLET_AID.to_vec(),
        Some(256),
    )
}

/// The most data bytes one command or response carries on SE050.
pub const MAX_APDU_PAYLOAD: usize = 889;

pub const CLA_ISO: u8 = 0x00;
pub const CLA_IOT: u8 = 0x80;
pub const INS_SELECT: u8 = 0xA4;

pub const INS_WRITE: u8 = 0x01;
pub const INS_READ: u8 = 0x02;
pub const INS_CRYPTO: u8 = 0x03;
pub const INS_MGMT: u8 = 0x04;
pub const INS_PROCESS: u8 = 0x05;
/// OR-flag on WRITE: the object's contents are transient.
pub const INS_FLAG_TRANSIENT: u8 = 0x80;
/// OR-flag on WRITE: the object is an authentication object (a UserID, AN12413 table 18).
pub const INS_FLAG_AUTH_OBJECT: u8 = 0x40;

pub const P1_DEFAULT: u8 = 0x00;
pub const P1_EC: u8 = 0x01;
pub const P1_AES: u8 = 0x03;
pub const P1_BINARY: u8 = 0x06;
/// WriteUserID (NXP middleware `kSE05x_P1_UserID`).
pub const P1_USERID: u8 = 0x07;
pub const P1_KEY_PAIR: u8 = 0x60;
pub const P1_PRIVATE: u8 = 0x40;
pub const P1_PUBLIC: u8 = 0x20;

pub const P2_DEFAULT: u8 = 0x00;
pub const P2_SIZE: u8 = 0x07;
pub const P2_DH: u8 = 0x0F;
pub const P2_VERSION: u8 = 0x20;
pub const P2_LIST: u8 = 0x25;
pub const P2_TYPE: u8 = 0x26;
pub const P2_EXIST: u8 = 0x27;
pub const P2_DELETE_OBJECT: u8 = 0x28;
pub const P2_RANDOM: u8 = 0x49;
/// GetFreeMemory, DeleteAll, GetTimestamp (NXP middleware `kSE05x_P2_MEMORY`, `_DELETE_ALL`,
/// `_TIME`).
pub const P2_MEMORY: u8 = 0x22;
pub const P2_DELETE_ALL: u8 = 0x2A;
pub const P2_TIME: u8 = 0x3D;
/// ReadObjectAttributes (NXP middleware `kSE05x_P2_ATTRIBUTES`).
pub const P2_ATTRIBUTES: u8 = 0x3B;
/// GetFreeMemory's memory types (`SE05x_MemoryType_t`).
pub const MEMORY_PERSISTENT: u8 = 0x01;
pub const MEMORY_TRANSIENT_RESET: u8 = 0x02;
pub const MEMORY_TRANSIENT_DESELECT: u8 = 0x03;
/// The authentication object whose session may run DeleteAll (NXP middleware
/// `kSE05x_AppletResID_FACTORY_RESET`, se05x_enums.h; 0x7FFF0202 there is `_KP_ECKEY_IMPORT`).
pub const FACTORY_RESET_ID: u32 = 0x7FFF_0205;
/// GetTimestamp's answer: 12 bytes.
pub const TIMESTAMP_LEN: usize = 12;
/// Sessions (AN12413 4.5; NXP middleware `kSE05x_P2_SESSION_CREATE` / `_CLOSE` / `_UserID`).
pub const P2_SESSION_CREATE: u8 = 0x1B;
pub const P2_SESSION_CLOSE: u8 = 0x1C;
pub const P2_SESSION_USERID: u8 = 0x2C;

/// The session id of a session-wrapped command (ProcessSessionCmd).
pub const TAG_SESSION_ID: u8 = 0x10;
pub const TAG_POLICY: u8 = 0x11;
/// The maximum number of failed authentications of a UserID (2 bytes, big-endian).
pub const TAG_MAX_ATTEMPTS: u8 = 0x12;
pub const TAG_1: u8 = 0x41;
pub const TAG_2: u8 = 0x42;
pub const TAG_3: u8 = 0x43;
pub const TAG_4: u8 = 0x44;

/// Curve id of X25519 (MONT_DH_25519).
pub const CURVE_X25519: u8 = 0x41;

/// CheckObjectExists answers.
pub const RESULT_SUCCESS: u8 = 0x01;
pub const RESULT_FAILURE: u8 = 0x02;

/// ReadIDList more-flag.
pub const MORE_INDICATOR_MORE: u8 = 0x02;
pub const MORE_INDICATOR_DONE: u8 = 0x01;

/// ReadIDList type filter: all objects.
pub const TYPE_FILTER_ALL: u8 = 0xFF;

/// Applet configuration bit: X25519/X448 (Montgomery DH) available.
pub const CONFIG_DH_MONT: u16 = 0x0008;

/// Access rules in a policy entry (what the authenticated user may do).
pub const POLICY_ALLOW_KA: u32 = 0x0400_0000;
pub const POLICY_ALLOW_READ: u32 = 0x0020_0000;
pub const POLICY_ALLOW_WRITE: u32 = 0x0010_0000;
pub const POLICY_ALLOW_GEN: u32 = 0x0008_0000;
pub const POLICY_ALLOW_DELETE: u32 = 0x0004_0000;

// ----- EC keys on other curves, signatures (issue 22) -----
// NXP/plug-and-trust @ 9721d640, hostlib/hostLib/inc/se05x_enums.h.

/// Curve id of NIST P-256 (`kSE05x_ECCurve_NIST_P256`).
pub const CURVE_NIST_P256: u8 = 0x03;
/// Curve id of Ed25519 (`kSE05x_ECCurve_ECC_ED_25519`).
pub const CURVE_ED25519: u8 = 0x40;
/// P1 of the curve commands (`kSE05x_P1_CURVE`) and of the signatures (`kSE05x_P1_SIGNATURE`).
pub const P1_CURVE: u8 = 0x0B;
pub const P1_SIGNATURE: u8 = 0x0C;
/// CreateECCurve, SetECCurveParam, ReadECCurveList, ECDSASign/EdDSASign (`kSE05x_P2_CREATE`,
/// `_PARAM`, `_LIST`, `_SIGN`).
pub const P2_CREATE: u8 = 0x04;
pub const P2_PARAM: u8 = 0x40;
pub const P2_SIGN: u8 = 0x09;
/// GetECCurveId (`kSE05x_P2_ID`).
pub const P2_CURVE_ID: u8 = 0x36;
/// `SE05x_ECCurveParam_t`.
pub const CURVE_PARAM_A: u8 = 0x01;
pub const CURVE_PARAM_B: u8 = 0x02;
pub const CURVE_PARAM_G: u8 = 0x04;
pub const CURVE_PARAM_N: u8 = 0x08;
pub const CURVE_PARAM_PRIME: u8 = 0x10;
/// ReadECCurveList entries (`SE05x_SetIndicator_t`).
pub const CURVE_NOT_SET: u8 = 0x01;
pub const CURVE_SET: u8 = 0x02;
/// ECDSASign's algorithm for a 32-byte digest (`kSE05x_ECSignatureAlgo_SHA_256`: the chip signs
/// the digest it is given, it does not hash).
pub const ECDSA_SHA_256: u8 = 0x21;
/// EdDSASign's only algorithm (`kSE05x_EDSignatureAlgo_ED25519PURE_SHA_512`).
pub const EDDSA_ED25519_PURE: u8 = 0xA3;
/// Access rules for signing keys and for attestation (`POLICY_OBJ_ALLOW_SIGN`,
/// `POLICY_OBJ_ALLOW_ATTESTATION`, sss/inc/fsl_sss_policy.h / se05x_const.h).
pub const POLICY_ALLOW_SIGN: u32 = 0x1000_0000;
pub const POLICY_ALLOW_ATTESTATION: u32 = 0x0000_8000;
