//! The curve-management commands NXP's middleware sends before making a Weierstrass key
//! (`sss_se05x_create_curve_if_needed`): ReadECCurveList, CreateECCurve, SetECCurveParam, and
//! GetECCurveId, which tells the curve of a key. Layouts and sources: FORMATS.md.
//!
//! Fidelity notes (choices where the public sources say no more):
//! - the list has one entry per Weierstrass curve id 01..=11 (`kSE05x_ECCurve_Total_Weierstrass_
//!   Curves` entries, the size of the middleware's buffer): SET once all five parameters were
//!   given, NOT_SET otherwise; Ed25519 and X25519 are built in ("always preset") and not listed;
//! - CreateECCurve of a curve that exists, or of a built-in one, answers 6985 (the middleware
//!   only says it "fails" and ignores the error for X25519 on 7.x); an unknown id 6A80;
//! - SetECCurveParam on a curve not created answers 6985; P-256's parameters must be the
//!   standard ones (this chip computes only that curve: else 6A80); other curves' values are
//!   kept as given, and keys on them are not modelled;
//! - WriteECKey on P-256 before its curve is SET answers 6985 (the middleware creates the
//!   curve first because the chip needs it; the status word is not in its sources);
//! - GetECCurveId: no such object 6A80, an object that is not an EC key 6985.

use super::*;

/// Weierstrass curve ids the list covers (`kSE05x_ECCurve_NIST_P192` ..=
/// `kSE05x_ECCurve_TPM_ECC_BN_P256`).
const WEIERSTRASS: std::ops::RangeInclusive<u8> = 0x01..=0x11;
/// `kSE05x_SetIndicator_NOT_SET` / `_SET`.
const NOT_SET: u8 = 0x01;
const SET: u8 = 0x02;
/// `kSE05x_ECCurveParam_PARAM_A | _B | _G | _N | _PRIME`.
const ALL_PARAMS: u8 = 0x01 | 0x02 | 0x04 | 0x08 | 0x10;

impl VirtualApplet {
    /// Whether `curve` is usable for keys: built in, or created with all its parameters.
    pub(super) fn curve_is_set(&self, curve: u8) -> bool {
        match curve {
            CURVE_ED25519 | CURVE_X25519 => true,
            _ => self.store.state().curves.get(&curve) == Some(&ALL_PARAMS),
        }
    }

    /// ReadECCurveList `80 02 0B 25` -> `41 11 <one SetIndicator per curve id 01..=11>`.
    pub(super) fn read_curve_list(&mut self) -> Answer {
        let list: Vec<u8> = WEIERSTRASS
            .map(|curve| {
                if self.curve_is_set(curve) {
                    SET
                } else {
                    NOT_SET
                }
            })
            .collect();
        Ok(Reply::data(tag1(&list)))
    }

    /// CreateECCurve `80 01 0B 04` `41 01 <curve>`.
    pub(super) fn create_curve(&mut self, tlvs: &Tlvs) -> Answer {
        let [curve] = tlvs
            .require_array::<1>(TAG_1)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        if curve == CURVE_ED25519 || curve == CURVE_X25519 {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if !WEIERSTRASS.contains(&curve) {
            return Err(StatusWord::WRONG_DATA);
        }
        if self.store.state().curves.contains_key(&curve) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let mut next = self.store.state().clone();
        next.curves.insert(curve, 0);
        self.commit(next)?;
        Ok(Reply::data(Vec::new()).counted(Counter::Writes))
    }

    /// SetECCurveParam `80 01 0B 40` `41 01 <curve> 42 01 <parameter> 43 LL <value>`.
    pub(super) fn set_curve_param(&mut self, tlvs: &Tlvs) -> Answer {
        let [curve] = tlvs
            .require_array::<1>(TAG_1)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let [param] = tlvs
            .require_array::<1>(TAG_2)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let value = tlvs.require(TAG_3).map_err(|_| StatusWord::WRONG_DATA)?;
        if param.count_ones() != 1 || param & ALL_PARAMS != param {
            return Err(StatusWord::WRONG_DATA);
        }
        let Some(&given) = self.store.state().curves.get(&curve) else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        if curve == CURVE_NIST_P256 && crate::ec::p256_parameter(param) != Some(value.to_vec()) {
            return Err(StatusWord::WRONG_DATA);
        }
        let mut next = self.store.state().clone();
        next.curves.insert(curve, given | param);
        self.commit(next)?;
        Ok(Reply::data(Vec::new()).counted(Counter::Writes))
    }

    /// GetECCurveId `80 02 0B 36` `41 04 <id>` -> `41 01 <curve>`.
    pub(super) fn curve_id(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let curve = match &self.object(id)?.data {
            ObjectData::X25519Pair { .. } | ObjectData::X25519Private { .. } => CURVE_X25519,
            ObjectData::P256Pair { .. } => CURVE_NIST_P256,
            ObjectData::Ed25519Pair { .. } => CURVE_ED25519,
            _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
        };
        Ok(Reply::data(tag1(&[curve])))
    }
}
