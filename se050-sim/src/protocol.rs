//! The IoT applet's command bytes, as the chip understands them. Values from AN12413 (SE050
//! APDU specification) and NXP's Plug & Trust middleware headers, which name them
//! (`se05x_enums.h`: `SE05x_INS_t`, `SE05x_P1_t`, `SE05x_P2_t`, `SE05x_TAG_t`, `SE05x_ECCurve_t`,
//! `SE05x_Result_t`, `SE05x_SecObjTyp_t`, `SE05x_AppletResID_t`, `SE05x_MemoryType_t`;
//! `fsl_sss_policy.h` / `se05x_const.h` for the policy bits). The middleware's name is given
//! where ours differs.

/// AID of the IoT applet (AN12413 "Select": A0 00 00 03 96 54 53 00 00 00 01 03 00 00 00 00).
pub const IOT_APPLET_AID: [u8; 16] = [
    0xA0, 0x00, 0x00, 0x03, 0x96, 0x54, 0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00,
];

/// The most data bytes one command or response carries on the SE050 (AN12413: 889).
pub const MAX_APDU_PAYLOAD: usize = 889;

pub const CLA_ISO: u8 = 0x00;
/// The applet's class byte (`kSE05x_CLA`).
pub const CLA_IOT: u8 = 0x80;
/// The class byte of a command under secure messaging (ISO/IEC 7816-4: bit 3 set).
pub const CLA_SECURE: u8 = 0x84;
pub const INS_SELECT: u8 = 0xA4;

pub const INS_WRITE: u8 = 0x01;
pub const INS_READ: u8 = 0x02;
pub const INS_CRYPTO: u8 = 0x03;
pub const INS_MGMT: u8 = 0x04;
pub const INS_PROCESS: u8 = 0x05;
/// `kSE05x_INS_TRANSIENT`: OR-ed into WRITE.
pub const INS_FLAG_TRANSIENT: u8 = 0x80;
/// `kSE05x_INS_AUTH_OBJECT`: OR-ed into WRITE.
pub const INS_FLAG_AUTH_OBJECT: u8 = 0x40;
/// `kSE05x_INS_ATTEST`: OR-ed into READ (`kSE05x_INS_READ_With_Attestation`, 0x22).
pub const INS_FLAG_ATTEST: u8 = 0x20;

pub const P1_DEFAULT: u8 = 0x00;
pub const P1_EC: u8 = 0x01;
pub const P1_AES: u8 = 0x03;
pub const P1_BINARY: u8 = 0x06;
/// `kSE05x_P1_SIGNATURE`: ECDSASign / EdDSASign (with P2_SIGN).
pub const P1_SIGNATURE: u8 = 0x0C;
/// `kSE05x_P1_UserID`.
pub const P1_USERID: u8 = 0x07;
/// `kSE05x_P1_CURVE`: the curve-management commands.
pub const P1_CURVE: u8 = 0x0B;
/// `kSE05x_P1_MASK_KEY_TYPE` and its values.
pub const P1_KEY_TYPE_MASK: u8 = 0x60;
pub const P1_KEY_PAIR: u8 = 0x60;
pub const P1_PRIVATE: u8 = 0x40;

pub const P2_DEFAULT: u8 = 0x00;
pub const P2_SIZE: u8 = 0x07;
/// `kSE05x_P2_SIGN`.
pub const P2_SIGN: u8 = 0x09;
pub const P2_DH: u8 = 0x0F;
pub const P2_SESSION_CREATE: u8 = 0x1B;
pub const P2_SESSION_CLOSE: u8 = 0x1C;
pub const P2_VERSION: u8 = 0x20;
pub const P2_MEMORY: u8 = 0x22;
pub const P2_LIST: u8 = 0x25;
pub const P2_TYPE: u8 = 0x26;
pub const P2_EXIST: u8 = 0x27;
pub const P2_DELETE_OBJECT: u8 = 0x28;
pub const P2_DELETE_ALL: u8 = 0x2A;
/// `kSE05x_P2_SESSION_UserID`: VerifySessionUserID.
pub const P2_SESSION_USERID: u8 = 0x2C;
pub const P2_ATTRIBUTES: u8 = 0x3B;
pub const P2_TIME: u8 = 0x3D;
pub const P2_RANDOM: u8 = 0x49;
/// `kSE05x_P2_CREATE`, `kSE05x_P2_PARAM`, `kSE05x_P2_ID` (CreateECCurve, SetECCurveParam,
/// GetECCurveId; ReadECCurveList is P2_LIST).
pub const P2_CREATE: u8 = 0x04;
pub const P2_PARAM: u8 = 0x40;
pub const P2_ID: u8 = 0x36;

pub const TAG_SESSION_ID: u8 = 0x10;
pub const TAG_POLICY: u8 = 0x11;
pub const TAG_MAX_ATTEMPTS: u8 = 0x12;
pub const TAG_1: u8 = 0x41;
pub const TAG_2: u8 = 0x42;
pub const TAG_3: u8 = 0x43;
pub const TAG_4: u8 = 0x44;
pub const TAG_5: u8 = 0x45;
pub const TAG_6: u8 = 0x46;
pub const TAG_7: u8 = 0x47;
/// `kSE05x_TAG_TIMESTAMP`, `kSE05x_TAG_SIGNATURE`: the 7.x attested read's answer.
pub const TAG_TIMESTAMP: u8 = 0x4F;
pub const TAG_SIGNATURE: u8 = 0x52;

/// `kSE05x_ECCurve_ECC_MONT_DH_25519`.
pub const CURVE_X25519: u8 = 0x41;
/// `kSE05x_ECCurve_NIST_P256`.
pub const CURVE_NIST_P256: u8 = 0x03;
/// `kSE05x_ECCurve_ECC_ED_25519`.
pub const CURVE_ED25519: u8 = 0x40;

/// `SE05x_ECSignatureAlgo_t`: ECDSA over a hash the host computed (`_SHA` is SHA-1).
pub const ECDSA_SHA_1: u8 = 0x11;
pub const ECDSA_SHA_224: u8 = 0x25;
pub const ECDSA_SHA_256: u8 = 0x21;
pub const ECDSA_SHA_384: u8 = 0x22;
pub const ECDSA_SHA_512: u8 = 0x26;
/// `kSE05x_EDSignatureAlgo_ED25519PURE_SHA_512`: PureEdDSA, the whole message sent.
pub const EDDSA_ED25519_PURE: u8 = 0xA3;
/// `kSE05x_AttestationAlgo_EC_SHA_256` (= ECDSA_SHA_256): the attestation signature.
pub const ATTESTATION_ALGO_EC_SHA_256: u8 = ECDSA_SHA_256;

/// The hash length an ECDSA signature algorithm expects, `None` for an unknown algorithm.
pub fn ecdsa_hash_len(algorithm: u8) -> Option<usize> {
    match algorithm {
        ECDSA_SHA_1 => Some(20),
        ECDSA_SHA_224 => Some(28),
        ECDSA_SHA_256 => Some(32),
        ECDSA_SHA_384 => Some(48),
        ECDSA_SHA_512 => Some(64),
        _ => None,
    }
}

/// The pre-provisioned ECC (NIST P-256) attestation key (fsl_sss_se05x_apis.c
/// `SSS_SE05X_RESID_ATTESTATION_KEY`; the se05x_ReadWithAttestation demo's `ATTESTATION_KEY_ID`
/// for SE050 A/C and every 7.x applet).
pub const ATTESTATION_KEY: u32 = 0xF000_0012;
/// Its certificate, a binary file (AN12436's id for the ECC attestation certificate; the
/// middleware does not name it).
pub const ATTESTATION_CERTIFICATE: u32 = 0xF000_0013;
/// The attested read's freshness value (the demo's `freshness[16]`).
pub const FRESHNESS_LEN: usize = 16;
/// The chip's unique id (object 0x7FFF0206, `SE050_MODULE_UNIQUE_ID_LEN`).
pub const UNIQUE_ID_LEN: usize = 18;

/// `kSE05x_Result_SUCCESS` / `_FAILURE` (CheckObjectExists).
pub const RESULT_SUCCESS: u8 = 0x01;
pub const RESULT_FAILURE: u8 = 0x02;
/// ReadIDList's more indicator (`kSE05x_MoreIndicator_MORE` / `_NA`... AN12413: 01 no more,
/// 02 more).
pub const MORE_INDICATOR_MORE: u8 = 0x02;
pub const MORE_INDICATOR_DONE: u8 = 0x01;
/// ReadIDList's filter for every type.
pub const TYPE_FILTER_ALL: u8 = 0xFF;

/// `SE05x_MemoryType_t`.
pub const MEMORY_PERSISTENT: u8 = 0x01;
pub const MEMORY_TRANSIENT_RESET: u8 = 0x02;
pub const MEMORY_TRANSIENT_DESELECT: u8 = 0x03;
/// GetTimestamp's answer length (AN12413: 12 bytes).
pub const TIMESTAMP_LEN: usize = 12;

/// `kSE05x_AppletResID_FACTORY_RESET`: the authentication object whose session may run
/// DeleteAll. (0x7FFF0202 is `kSE05x_AppletResID_KP_ECKEY_IMPORT`.)
pub const FACTORY_RESET_ID: u32 = 0x7FFF_0205;
/// `kSE05x_AppletResID_UNIQUE_ID`: the binary file holding the chip's 18-byte unique id.
pub const UNIQUE_ID: u32 = 0x7FFF_0206;
/// The applet's reserved ids (AN12413 "Reserved identifiers"): 0x7FFF0000..=0x7FFFFFFF.
pub const APPLET_RESERVED: std::ops::RangeInclusive<u32> = 0x7FFF_0000..=0x7FFF_FFFF;
/// Objects NXP provisions (trust provisioning): 0xF0000000..=0xFFFFFFFF.
pub const NXP_RESERVED: std::ops::RangeInclusive<u32> = 0xF000_0000..=0xFFFF_FFFF;

/// Whether `id` is in a reserved range (readable, not created or deleted by users).
pub fn is_reserved(id: u32) -> bool {
    APPLET_RESERVED.contains(&id) || NXP_RESERVED.contains(&id)
}

/// Applet configuration bit `kSE05x_AppletConfig_DH_MONT`: X25519/X448 available.
pub const CONFIG_DH_MONT: u16 = 0x0008;

/// Policy access rules (`POLICY_OBJ_ALLOW_*`, fsl_sss_policy.h), big-endian on the wire.
pub const POLICY_ALLOW_SIGN: u32 = 0x1000_0000;
pub const POLICY_ALLOW_KA: u32 = 0x0400_0000;
/// `POLICY_OBJ_ALLOW_ATTESTATION` (se05x_const.h).
pub const POLICY_ALLOW_ATTESTATION: u32 = 0x0000_8000;
pub const POLICY_ALLOW_READ: u32 = 0x0020_0000;
pub const POLICY_ALLOW_WRITE: u32 = 0x0010_0000;
pub const POLICY_ALLOW_GEN: u32 = 0x0008_0000;
pub const POLICY_ALLOW_DELETE: u32 = 0x0004_0000;

/// Secure object types (`SE05x_SecObjTyp_t`), as ReadType and ReadIDList's filter use them.
pub const TYPE_EC_KEY_PAIR: u8 = 0x01;
pub const TYPE_EC_PRIVATE_KEY: u8 = 0x02;
pub const TYPE_AES_KEY: u8 = 0x09;
pub const TYPE_BINARY_FILE: u8 = 0x0B;
pub const TYPE_USERID: u8 = 0x0C;

/// ReadType's persistence answer (`SE05x_TransientType_t`... AN12413: 01 persistent, 02
/// transient).
pub const PERSISTENT: u8 = 0x01;
pub const TRANSIENT: u8 = 0x02;

/// Object attribute origin codes (AN12413 "Object attributes"; NXP middleware
/// `SE05x_Origin_t`: kSE05x_Origin_EXTERNAL 01, _INTERNAL 02, _PROVISIONED 03).
pub const ORIGIN_EXTERNAL: u8 = 0x01;
pub const ORIGIN_INTERNAL: u8 = 0x02;
pub const ORIGIN_PROVISIONED: u8 = 0x03;

/// One entry of an object policy: `len(1) auth object id(4) access rules(4) [extension]`
/// (AN12413 "Policies"; NXP middleware `sss_se05x_create_object_policy_buffer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyEntry {
    pub auth_object: u32,
    pub access: u32,
}

/// The entries of a policy TLV value; `None` when malformed or empty.
pub fn decode_policy(bytes: &[u8]) -> Option<Vec<PolicyEntry>> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while let [len, ref after @ ..] = *rest {
        let len = usize::from(len);
        if len < 8 || after.len() < len {
            return None;
        }
        entries.push(PolicyEntry {
            auth_object: u32::from_be_bytes(after[..4].try_into().ok()?),
            access: u32::from_be_bytes(after[4..8].try_into().ok()?),
        });
        rest = &after[len..];
    }
    (!entries.is_empty()).then_some(entries)
}

/// The 7 bytes SELECT and GetVersion answer: major, minor, patch, applet configuration (2, BE),
/// SecureBox major, minor (AN12413 "GetVersion").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppletVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
    pub config: u16,
    pub securebox_major: u8,
    pub securebox_minor: u8,
}

impl AppletVersion {
    pub fn to_bytes(self) -> [u8; 7] {
        let [hi, lo] = self.config.to_be_bytes();
        [
            self.major,
            self.minor,
            self.patch,
            hi,
            lo,
            self.securebox_major,
            self.securebox_minor,
        ]
    }

    pub fn has_x25519(self) -> bool {
        self.config & CONFIG_DH_MONT != 0
    }
}

/// SELECT of the IoT applet, as AN12413 gives it (`00 A4 04 00 10 <AID> 00`), for tests.
pub fn select_bytes() -> Vec<u8> {
    let mut out = vec![CLA_ISO, INS_SELECT, 0x04, 0x00, 0x10];
    out.extend_from_slice(&IOT_APPLET_AID);
    out.push(0x00);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_by_hand() {
        // Everyone (0) may do key agreement; user 0x7AFF0001 may read and delete.
        let bytes = [
            8, 0, 0, 0, 0, 0x04, 0, 0, 0, 8, 0x7A, 0xFF, 0, 1, 0x00, 0x24, 0, 0,
        ];
        let entries = decode_policy(&bytes).unwrap();
        assert_eq!(
            entries,
            [
                PolicyEntry {
                    auth_object: 0,
                    access: POLICY_ALLOW_KA
                },
                PolicyEntry {
                    auth_object: 0x7AFF_0001,
                    access: POLICY_ALLOW_READ | POLICY_ALLOW_DELETE
                }
            ]
        );
        // An entry with a 4-byte extension is read past it.
        let extended = [12, 0, 0, 0, 0, 0x04, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(decode_policy(&extended).unwrap().len(), 1);
        assert!(decode_policy(&[]).is_none());
        assert!(decode_policy(&[7, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(decode_policy(&[8, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn reserved_ranges() {
        assert!(is_reserved(UNIQUE_ID) && is_reserved(FACTORY_RESET_ID));
        assert!(is_reserved(0xF000_0012) && is_reserved(0xFFFF_FFFF));
        assert!(!is_reserved(0x7FFE_FFFF) && !is_reserved(1) && !is_reserved(0xEFFF_FFFF));
    }
}
