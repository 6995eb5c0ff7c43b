//! Every IoT applet command the module sends, as `applet::Se050` emits it, next to the bytes
//! NXP's middleware puts on the wire for the same call (same object id, same values).
//!
//! How NXP's bytes come about (NXP = NXP/plug-and-trust @ 9721d640): each `Se05x_API_*`
//! builder in hostlib/hostLib/se05x_03_xx_xx/se05x_APDU_impl.h fills TLVs with the `tlvSet_*`
//! helpers (hostlib/hostLib/se05x/src/se05x_tlv.c) and hands header and data to one of
//! `DoAPDUTx_s_Case3` (no response data), `DoAPDUTxRx_s_Case2` / `DoAPDUTxRx_s_Case4`
//! (`hasle` 0) or `DoAPDUTxRx_s_Case4_ext` (`hasle` 1). Without SCP03 and without an applet
//! session, `sss_se05x_channel_txnRaw` (sss/src/se05x/fsl_sss_se05x_apis.c) then writes
//! `header, Lc (one byte if data < 0xFF and !hasle, else 00 HH LL), data`, a lone `00` when
//! there is no data, and `00 00` (Le) when `hasle`. So NXP sends no Le at all on its case-4
//! commands without `hasle`, and `00 00` on those with it.
//!
//! The host asks for the response length in Le on every command that answers data (`00`, or
//! `HH LL` extended when it asks for more than 256 bytes). Real chips answer both forms: NXP's
//! middleware gets its answers without Le, and Nitrokey's `se05x` crate (used with real SE050s)
//! sends Le on these commands (src/se05x/commands.toml, `le =`), as an older NXP middleware did
//! on ProcessSessionCmd (forum log, see SOURCES.md). Each test pins the host's exact bytes and
//! checks, with a parser written here, that they carry NXP's header and data unchanged.

use super::*;
use crate::applet::protocol::*;
use crate::applet::rfc7748::{ALICE_PUBLIC, BOB_PUBLIC, SHARED};
use crate::applet::{ObjectId, PolicyEntry, Se050};

/// The key pair, UserID, session and file the vectors use.
const KEY: u32 = 0x7000_0010;
const USER: u32 = 0x7AFF_0001;
const FILE: u32 = 0x7AFF_0003;
const SESSION: &str = "0102030405060708";

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn reversed(bytes: [u8; 32]) -> String {
    let mut b = bytes;
    b.reverse();
    to_hex(&b)
}

/// The host's command is exactly NXP's.
#[track_caller]
fn same_as_nxp(what: &str, host: &[u8], nxp: &str) {
    assert_bytes(&format!("{what} (NXP's bytes)"), host, &hex(nxp));
}

/// The host's command is exactly `host_expected`; it has NXP's header and data, and only the
/// Lc/Le form differs (see the module documentation).
#[track_caller]
pub(super) fn nxp_but_le(what: &str, host: &[u8], host_expected: &str, nxp: &str) {
    assert_bytes(
        &format!("{what} (host's pinned bytes)"),
        host,
        &hex(host_expected),
    );
    let (h, n) = (split(host), split(&hex(nxp)));
    assert_eq!(h.header, n.header, "{what}: header");
    assert_bytes(
        &format!("{what}: data field against NXP's"),
        &h.data,
        &n.data,
    );
    assert_ne!(h.le, n.le, "{what}: the vector claims an Le difference");
}

/// The applet selected on a recorder that answers `replies` after the SELECT; the SELECT is
/// already taken off the record (its own test checks it).
pub(super) fn chip(replies: &[&str]) -> Se050<Recorder> {
    let mut chip = Se050::select(Recorder::selected(replies)).expect("select");
    chip.transport_mut().sent.clear();
    chip
}

/// The commands sent since the last call.
pub(super) fn sent(chip: &mut Se050<Recorder>) -> Vec<Vec<u8>> {
    std::mem::take(&mut chip.transport_mut().sent)
}

/// SELECT: NXP `GP_Select` (hostlib/hostLib/libCommon/infra/global_platf.c) with `APPLET_NAME`
/// (hostlib/hostLib/inc/sm_const.h): `00 A4 04 00 10 <AID> 00`. The same bytes are in NXP's
/// nano-package log of an SE050E (community.nxp.com thread 2114523, "APDU Tx>").
#[test]
fn select_is_nxp_gp_select() {
    let chip = Se050::select(Recorder::selected(&[])).expect("select");
    let mut transport = chip.into_transport();
    same_as_nxp(
        "SELECT",
        &transport.sent.remove(0),
        "00 A4 04 00 10 A0000003965453000000010300000000 00",
    );
}

/// GetVersion: NXP `Se05x_API_GetVersion` -> `DoAPDUTxRx_s_Case2` without data:
/// `sss_se05x_channel_txnRaw` writes the header and a lone `00`.
#[test]
fn get_version_is_nxp_se05x_api_getversion() {
    let mut chip = chip(&["41 07 0702003F9FFFFF 9000"]);
    chip.get_version().unwrap();
    same_as_nxp("GetVersion", &sent(&mut chip)[0], "80 04 00 20 00");
}

/// WriteECKey, generate an X25519 pair: NXP `sss_se05x_key_store_generate_key` calls
/// `Se05x_API_WriteECKey(policy NULL, SE05x_MaxAttemps_NA, id, kSE05x_ECCurve_ECC_MONT_DH_25519
/// (0x41, se05x_enums.h) for a new object, no private or public key, kSE05x_INS_NA,
/// kSE05x_KeyPart_Pair (0x60))`: P1 = kSE05x_P1_EC | 0x60, TLVs 41 id, 42 curve; Case3.
#[test]
fn generate_x25519_is_nxp_se05x_api_writeeckey() {
    let mut chip = chip(&["9000"]);
    chip.generate_x25519(id(KEY)).unwrap();
    same_as_nxp(
        "WriteECKey (generate)",
        &sent(&mut chip)[0],
        "80 01 61 00 09  41 04 70000010  42 01 41",
    );
}

/// The same with a policy: NXP `sss_se05x_create_object_policy_buffer`
/// (sss/src/se05x/fsl_sss_se05x_policy.c) merges an asymmetric-key policy (can_KA, can_Read)
/// and a common policy (can_Delete) for one auth object into one entry: length
/// DEFAULT_OBJECT_POLICY_SIZE (8), auth object id, access header big-endian
/// (POLICY_OBJ_ALLOW_KA 0x04000000 | _READ 0x00200000 | _DELETE 0x00040000, se05x_const.h);
/// `Se05x_API_WriteECKey` puts it first, in tag 0x11 (kSE05x_TAG_POLICY).
#[test]
fn generate_x25519_with_policy_is_nxp_policy_buffer() {
    let mut chip = chip(&["9000"]);
    let policy = [PolicyEntry {
        auth_object: USER,
        access: POLICY_ALLOW_KA | POLICY_ALLOW_READ | POLICY_ALLOW_DELETE,
    }];
    chip.generate_x25519_with_policy(id(KEY), &policy).unwrap();
    same_as_nxp(
        "WriteECKey (generate, policy)",
        &sent(&mut chip)[0],
        "80 01 61 00 14  11 09 08 7AFF0001 04240000  41 04 70000010  42 01 41",
    );
}

/// ReadObject of an X25519 public key: NXP `sss_se05x_key_store_get_key` ->
/// `Se05x_API_ReadObject(id, offset 0, length 0)` (both omitted by `tlvSet_U16Optional`),
/// `DoAPDUTxRx_s_Case4_ext`: extended Lc, Le `00 00`. The host asks for 889 bytes (`03 79`).
/// The answer is in the chip's order; NXP reverses it ("Change Endiannes" for
/// kSE05x_ECCurve_ECC_MONT_DH_25519), the host too: RFC 7748 order comes out.
#[test]
fn read_x25519_public_is_nxp_se05x_api_readobject() {
    let answer = format!("41 20 {} 9000", reversed(ALICE_PUBLIC));
    let mut chip = chip(&[&answer]);
    let public = chip.read_x25519_public(id(KEY)).unwrap();
    assert_bytes("public key, RFC 7748 order", &public, &ALICE_PUBLIC);
    nxp_but_le(
        "ReadObject",
        &sent(&mut chip)[0],
        "80 02 00 00 00 00 06  41 04 70000010  03 79",
        "80 02 00 00 00 00 06  41 04 70000010  00 00",
    );
}

/// ECDHGenerateSharedSecret: NXP `sss_se05x_derive_key_dh` reverses the peer's X25519 public
/// key ("Change Endianness Public Key in case of Montgomery Curve"), calls
/// `Se05x_API_ECGenSharedSecret` = `Se05x_API_ECDHGenerateSharedSecret` (se05x_APDU.h) with
/// TLVs 41 id, 42 key; `DoAPDUTxRx_s_Case4_ext`; then reverses the secret. RFC 7748 section 6.1
/// values on the host API (Bob's public key in, the shared secret out), the chip's order in the
/// APDU. NXP's APDU is extended (`00 00 28`, Le `00 00`); the host's short (`28`, Le `00`).
#[test]
fn ecdh_is_nxp_se05x_api_ecdhgeneratesharedsecret_with_reversed_keys() {
    let answer = format!("41 20 {} 9000", reversed(SHARED));
    let mut chip = chip(&[&answer]);
    let secret = chip.ecdh_x25519(id(KEY), &BOB_PUBLIC).unwrap();
    assert_bytes("shared secret, RFC 7748 order", &secret[..], &SHARED);
    let bob_chip_order = reversed(BOB_PUBLIC);
    assert!(
        bob_chip_order.starts_with("4F2B886F"),
        "chip order is reversed RFC order"
    );
    nxp_but_le(
        "ECDHGenerateSharedSecret",
        &sent(&mut chip)[0],
        &format!("80 03 01 0F 28  41 04 70000010  42 20 {bob_chip_order}  00"),
        &format!("80 03 01 0F 00 00 28  41 04 70000010  42 20 {bob_chip_order}  00 00"),
    );
}

/// CheckObjectExists: NXP `Se05x_API_CheckObjectExists`, `DoAPDUTxRx_s_Case4` (no Le).
#[test]
fn exists_is_nxp_se05x_api_checkobjectexists() {
    let mut chip = chip(&["41 01 01 9000"]);
    assert!(chip.exists(id(KEY)).unwrap());
    nxp_but_le(
        "CheckObjectExists",
        &sent(&mut chip)[0],
        "80 04 00 27 06  41 04 70000010  00",
        "80 04 00 27 06  41 04 70000010",
    );
}

/// ReadIDList: NXP `Se05x_API_ReadIDList(outputOffset 0, filter 0xFF)` (tlvSet_U16, tlvSet_U8),
/// `DoAPDUTxRx_s_Case4_ext`.
#[test]
fn list_ids_is_nxp_se05x_api_readidlist() {
    let mut chip = chip(&["41 01 01  42 08 70000010 7AFF0001  9000"]);
    let ids = chip.list_ids().unwrap();
    assert_eq!(ids, vec![id(KEY), id(USER)]);
    nxp_but_le(
        "ReadIDList",
        &sent(&mut chip)[0],
        "80 02 00 25 00 00 07  41 02 0000  42 01 FF  03 79",
        "80 02 00 25 00 00 07  41 02 0000  42 01 FF  00 00",
    );
}

/// DeleteSecureObject: NXP `Se05x_API_DeleteSecureObject`, `DoAPDUTx_s_Case3`.
#[test]
fn delete_is_nxp_se05x_api_deletesecureobject() {
    let mut chip = chip(&["9000"]);
    chip.delete(id(KEY)).unwrap();
    same_as_nxp(
        "DeleteSecureObject",
        &sent(&mut chip)[0],
        "80 04 00 28 06  41 04 70000010",
    );
}

/// A 300-byte file: the TLV length in its long form. NXP `Se05x_API_WriteBinary(policy NULL,
/// id, offset 0, length 300, data)`: `tlvSet_U16Optional` leaves out the offset 0, the data TLV
/// is `44 82 01 2C` (`tlvSet_u8buf`), Lc is extended because the data exceed 0xFF
/// (`sss_se05x_channel_txnRaw`). The host also sends the offset (`42 02 00 00`), which the
/// applet reads as the same offset 0 (AN12413 WriteBinary: TAG_2 optional, default 0).
#[test]
fn write_binary_300_bytes_is_nxp_se05x_api_writebinary() {
    let data: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let mut chip = chip(&["41 01 02 9000", "9000"]);
    chip.write_binary(id(FILE), &data).unwrap();
    let commands = sent(&mut chip);
    nxp_but_le(
        "CheckObjectExists before WriteBinary",
        &commands[0],
        "80 04 00 27 06  41 04 7AFF0003  00",
        "80 04 00 27 06  41 04 7AFF0003",
    );
    let body = to_hex(&data);
    let host = hex(&format!(
        "80 01 06 00 00 01 3E  41 04 7AFF0003  42 02 0000  43 02 012C  44 82 01 2C {body}"
    ));
    let nxp = hex(&format!(
        "80 01 06 00 00 01 3A  41 04 7AFF0003  43 02 012C  44 82 01 2C {body}"
    ));
    assert_bytes("WriteBinary (host's pinned bytes)", &commands[1], &host);
    // The same but the offset TLV.
    let (h, n) = (split(&commands[1]), split(&nxp));
    assert_eq!((h.header, h.le, h.extended), (n.header, n.le, n.extended));
    let mut without_offset = h.data[..6].to_vec();
    without_offset.extend_from_slice(&h.data[10..]);
    assert_eq!(&h.data[6..10], &hex("42 02 0000")[..]);
    assert_bytes(
        "WriteBinary data without the offset",
        &without_offset,
        &n.data,
    );
}

/// Rewriting a file of the same size: ReadType and ReadSize first. NXP `Se05x_API_ReadType`
/// and `Se05x_API_ReadSize`, both `DoAPDUTxRx_s_Case4`.
#[test]
fn read_type_and_size_are_nxp_se05x_api_readtype_readsize() {
    let data = [0x5Au8; 300];
    let mut chip = chip(&[
        "41 01 01 9000",
        "41 01 0B  42 01 01  9000",
        "41 02 01 2C 9000",
        "9000",
    ]);
    chip.write_binary(id(FILE), &data).unwrap();
    let commands = sent(&mut chip);
    nxp_but_le(
        "ReadType",
        &commands[1],
        "80 02 00 26 06  41 04 7AFF0003  00",
        "80 02 00 26 06  41 04 7AFF0003",
    );
    nxp_but_le(
        "ReadSize",
        &commands[2],
        "80 02 00 07 06  41 04 7AFF0003  00",
        "80 02 00 07 06  41 04 7AFF0003",
    );
    let body = to_hex(&data);
    assert_bytes(
        "WriteBinary over an existing file (no length TLV)",
        &commands[3],
        &hex(&format!(
            "80 01 06 00 00 01 3A  41 04 7AFF0003  42 02 0000  44 82 01 2C {body}"
        )),
    );
}

/// WriteUserID: NXP `Se05x_API_WriteUserID(policy NULL, maxAttempt 10, id, value,
/// kSE05x_AttestationType_AUTH)`: INS = kSE05x_INS_WRITE | kSE05x_INS_AUTH_OBJECT (0x41),
/// P1 = kSE05x_P1_UserID (07); TLVs [11 policy] 12 max attempts (tlvSet_MaxAttemps, left out
/// when 0), 41 id, 42 value; Case3.
#[test]
fn write_user_id_is_nxp_se05x_api_writeuserid() {
    let mut chip = chip(&["9000", "9000"]);
    chip.write_user_id(id(USER), b"123456", 10, &[]).unwrap();
    chip.write_user_id(id(USER), b"123456", 0, &[]).unwrap();
    let commands = sent(&mut chip);
    same_as_nxp(
        "WriteUserID (max attempts 10)",
        &commands[0],
        "80 41 07 00 12  12 02 000A  41 04 7AFF0001  42 06 313233343536",
    );
    same_as_nxp(
        "WriteUserID (no maximum)",
        &commands[1],
        "80 41 07 00 0E  41 04 7AFF0001  42 06 313233343536",
    );
}

/// A session: NXP `Se05x_API_CreateSession` (Case4, no Le), then with `hasSession` set
/// `se05x_Transform` (se05x_tlv.c) wraps each command as ProcessSessionCmd `80 05 00 00`:
/// `10 08 <session id> 41 <len> <inner header, Lc (one byte if data < 0xFF and !hasle, else
/// 00 HH LL), data>`: the inner command never carries Le; the outer one goes through
/// `sss_se05x_channel_txnRaw` as above. `Se05x_API_VerifySessionUserID` and
/// `Se05x_API_CloseSession` are Case3 (no Le anywhere). The host's outer command asks for the
/// inner answer with Le `00`.
#[test]
fn session_commands_are_nxp_createsession_verifysessionuserid_closesession() {
    let mut chip = chip(&[&format!("41 08 {SESSION} 9000"), "9000", "9000"]);
    chip.open_session(id(USER)).unwrap();
    assert_eq!(chip.session(), Some(hex(SESSION).try_into().unwrap()));
    chip.verify_user_id(b"123456").unwrap();
    chip.close_session().unwrap();
    let commands = sent(&mut chip);
    nxp_but_le(
        "CreateSession",
        &commands[0],
        "80 04 00 1B 06  41 04 7AFF0001  00",
        "80 04 00 1B 06  41 04 7AFF0001",
    );
    nxp_but_le(
        "VerifySessionUserID in ProcessSessionCmd",
        &commands[1],
        &format!("80 05 00 00 19  10 08 {SESSION}  41 0D 80 04 00 2C 08 41 06 313233343536  00"),
        &format!("80 05 00 00 19  10 08 {SESSION}  41 0D 80 04 00 2C 08 41 06 313233343536"),
    );
    nxp_but_le(
        "CloseSession in ProcessSessionCmd",
        &commands[2],
        &format!("80 05 00 00 10  10 08 {SESSION}  41 04 80 04 00 1C  00"),
        &format!("80 05 00 00 10  10 08 {SESSION}  41 04 80 04 00 1C"),
    );
}

/// ECDH inside a session (C_DeriveKey while logged in). NXP: the inner command of a
/// `hasle` builder gets the extended Lc (`00 00 28`) and no Le (`se05x_Transform`), the outer
/// one extended Lc and Le `00 00`. The host keeps the inner command as it would send it alone
/// (short Lc `28`, Le `00`) and asks `00` outside. The applet parses the inner APDU by its own
/// length fields; the inner X25519 bytes and TLVs are NXP's.
#[test]
fn ecdh_in_a_session_is_nxp_se05x_transform() {
    let answer = format!("41 20 {} 9000", reversed(SHARED));
    let mut chip = chip(&[&format!("41 08 {SESSION} 9000"), &answer]);
    chip.open_session(id(USER)).unwrap();
    let secret = chip.ecdh_x25519(id(KEY), &BOB_PUBLIC).unwrap();
    assert_bytes("shared secret", &secret[..], &SHARED);
    let key = reversed(BOB_PUBLIC);
    let host = hex(&format!(
        "80 05 00 00 3A  10 08 {SESSION}  41 2E 80 03 01 0F 28 41 04 70000010 42 20 {key} 00  00"
    ));
    let nxp = hex(&format!(
        "80 05 00 00 00 00 3B  10 08 {SESSION}  \
         41 2F 80 03 01 0F 00 00 28 41 04 70000010 42 20 {key}  00 00"
    ));
    let commands = sent(&mut chip);
    assert_bytes(
        "session-wrapped ECDH (host's pinned bytes)",
        &commands[1],
        &host,
    );
    // Both carry the same inner command: same header and data once split.
    let inner = |apdu: &[u8]| split(&split(apdu).data[12..]);
    let (h, n) = (inner(&commands[1]), inner(&nxp));
    assert_eq!(h.header, n.header);
    assert_bytes("inner ECDH data", &h.data, &n.data);
}

/// ReadObjectAttributes: NXP `Se05x_API_ReadObjectAttributes`
/// (se05x_03_xx_xx/se05x_04_xx_APDU_impl.h), `DoAPDUTxRx_s_Case4`.
#[test]
fn read_attributes_command_is_nxp_se05x_api_readobjectattributes() {
    let mut chip = chip(&["6985"]);
    assert!(chip.read_attributes(id(USER)).is_err());
    nxp_but_le(
        "ReadObjectAttributes",
        &sent(&mut chip)[0],
        "80 02 00 3B 06  41 04 7AFF0001  00",
        "80 02 00 3B 06  41 04 7AFF0001",
    );
}

/// GetRandom (C_GenerateRandom): NXP `Se05x_API_GetRandom(size)` (tlvSet_U16),
/// `DoAPDUTxRx_s_Case4_ext`. The host asks for exactly the TLV it expects (Le 0x22).
#[test]
fn get_random_is_nxp_se05x_api_getrandom() {
    let random = "A5".repeat(32);
    let mut chip = chip(&[&format!("41 20 {random} 9000")]);
    assert_eq!(chip.get_random(32).unwrap(), hex(&random));
    nxp_but_le(
        "GetRandom",
        &sent(&mut chip)[0],
        "80 04 00 49 04  41 02 0020  22",
        "80 04 00 49 00 00 04  41 02 0020  00 00",
    );
}

/// GetFreeMemory: NXP `Se05x_API_GetFreeMemory` (TLVSET_MemoryType, one byte;
/// kSE05x_MemoryType_PERSISTENT 01), `DoAPDUTxRx_s_Case4`; answer tlvGet_U16(TAG_1) (U32 only
/// on SE052F). GetTimestamp: `Se05x_API_GetTimestamp`, Case2, answer 12 bytes in TAG_1.
/// DeleteAll: `Se05x_API_DeleteAll`, Case3 without data, for which `sss_se05x_channel_txnRaw`
/// still writes a lone `00`: NXP's is a case-2 APDU, the host's a case-1 APDU.
#[test]
fn memory_time_and_delete_all_are_nxp_builders() {
    let mut chip = chip(&[
        "41 02 1F 40 9000",
        "41 0C 000102030405060708090A0B 9000",
        "9000",
    ]);
    assert_eq!(chip.free_memory(MEMORY_PERSISTENT).unwrap(), 0x1F40);
    assert_eq!(chip.timestamp().unwrap()[11], 0x0B);
    chip.delete_all().unwrap();
    let commands = sent(&mut chip);
    nxp_but_le(
        "GetFreeMemory",
        &commands[0],
        "80 04 00 22 03  41 01 01  00",
        "80 04 00 22 03  41 01 01",
    );
    same_as_nxp("GetTimestamp", &commands[1], "80 04 00 3D 00");
    nxp_but_le("DeleteAll", &commands[2], "80 04 00 2A", "80 04 00 2A 00");
}
