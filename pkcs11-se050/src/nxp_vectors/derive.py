#!/usr/bin/env python3
"""Derives the hand-derived vectors pinned in this directory by following NXP's
Plug & Trust middleware (NXP/plug-and-trust, commit 9721d640e21fa40ca9a3963b89ede078ea410365,
v04.07.01 + SBOM) step by step. It is a re-statement of what the cited C functions do, written
for this purpose; it shares no code with the host driver. Run: python3 derive.py
(needs python3-cryptography). The Rust tests pin its output as hex literals.
"""
from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


# ---- T=1 over I2C (hostlib/hostLib/libCommon/smCom/T1oI2C/phNxpEseProto7816_3.c) ----
def nxp_crc(frame):
    """phNxpEseProto7816_ComputeCRC with T1oI2C_UM11225, then stored as
    p[len-2] = crc >> 8, p[len-1] = crc & 0xFF (SendIframe / SendSFrame / sendRframe)."""
    cal = 0xFFFF
    for b in frame:
        cal ^= b
        for _ in range(8):
            cal = (cal >> 1) ^ 0x8408 if cal & 1 else cal >> 1
    cal ^= 0xFFFF
    crc = ((cal & 0xFF) << 8) | ((cal >> 8) & 0xFF)  # the UM11225 byte swap
    return bytes([(crc >> 8) & 0xFF, crc & 0xFF])


def s_frame(pcb, inf=b""):
    f = bytes([0x5A, pcb, len(inf)]) + inf
    return f + nxp_crc(f)


def i_frame(seq, chained, inf):
    pcb = (seq << 6) | (0x20 if chained else 0)
    f = bytes([0x5A, pcb, len(inf)]) + inf
    return f + nxp_crc(f)


def r_frame(last_received_seq, err=0):
    f = bytes([0x5A, 0x80 | ((last_received_seq ^ 1) << 4) | err, 0x00])
    return f + nxp_crc(f)


def chip_frame(pcb, inf):
    f = bytes([0xA5, pcb, len(inf)]) + inf
    return f + nxp_crc(f)


SELECT = h("00A4040010 A0000003965453000000010300000000 00")
ATR = h("00A000000396 0403E800FE 02 0B03E808010000000064 0000 0A 4A434F503420415450 4F")

print("== T=1 ==")
print("RESYNCH req      ", s_frame(0xC0).hex())
print("GET ATR req      ", s_frame(0xC7).hex())
print("soft reset req   ", s_frame(0xCF).hex())
print("chip reset req   ", s_frame(0xC6).hex())
print("end of APDU req  ", s_frame(0xC5).hex())
print("WTX rsp (INF 01) ", s_frame(0xE3, b"\x01").hex())
print("R-ACK after I(0) ", r_frame(0).hex())
print("R-ACK after I(1) ", r_frame(1).hex())
print("R-NAK CRC, I(0)  ", r_frame(0, 1).hex())
print("R-NAK other, I(1)", r_frame(1, 2).hex())
print("I(0) SELECT      ", i_frame(0, False, SELECT).hex())
big = bytes(range(256)) + bytes(range(44))  # 300 bytes
print("I(1,M) 254 first ", i_frame(1, True, big[:254]).hex()[-10:], "(len", len(i_frame(1, True, big[:254])), ")")
print("I(0) 46 rest     ", i_frame(0, False, big[254:]).hex())
print("chip S(ATR rsp)  ", chip_frame(0xE7, ATR).hex())
print("chip S(RESYNCH r)", chip_frame(0xE0, b"").hex())
print("chip I(0) 9000   ", chip_frame(0x00, h("9000")).hex())
print("chip WTX req 01  ", chip_frame(0xC3, b"\x01").hex())
print("chip I(0) SELECT answer", chip_frame(0x00, h("0702003F9FFFFF9000")).hex())
print("chip R(N(R)=0)   ", chip_frame(0x80, b"").hex())
print("chip I(1) 9000   ", chip_frame(0x40, h("9000")).hex())


# ---- SCP03 (sss/src/se05x/fsl_sss_se05x_scp03.c, hostlib/hostLib/libCommon/nxScp/nxScp03_Com.c,
#      hostlib/hostLib/se05x/src/se05x_tlv.c se05x_Transform_scp / se05x_DeCrypt) ----
def cmac(k, d):
    c = CMAC(algorithms.AES(k))
    c.update(d)
    return c.finalize()


def ecb(k, block):
    e = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def cbc(k, iv, data):
    e = Cipher(algorithms.AES(k), modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def kdf(k, const, bits, ctx):
    # nxScp03_setDerivationData: 11 x 00, constant, 00, L (2 bytes), counter 01, context.
    return cmac(k, bytes(11) + bytes([const, 0]) + bits.to_bytes(2, "big") + b"\x01" + ctx)


def pad(d):  # nxSCP03_PadCommandAPDU
    d = d + b"\x80"
    return d + bytes((16 - len(d) % 16) % 16)


# SE050E development keys (sss/ex/inc/ex_sss_tp_scp03_keys.h, SSS_PFSCP_ENABLE_SE050E_0001A921)
ENC = h("D2DB63E7A0A5AED72A6460C4DFDCAF64")
MAC = h("738D5B798ED241B0B24768514BFBA95B")
# The logged SE050E session (NXP community thread 2114523, nano-package 1.5.4):
HOST_CHALLENGE = h("1122334455667788")
IU_RESPONSE = h("90031347000043202316 0b0300 05437d4e3c213d20 c4d889c1270264c4")
card_challenge = IU_RESPONSE[13:21]
ctx = HOST_CHALLENGE + card_challenge
s_enc, s_mac, s_rmac = kdf(ENC, 4, 128, ctx), kdf(MAC, 6, 128, ctx), kdf(MAC, 7, 128, ctx)
print("== SCP03 ==")
print("S-ENC", s_enc.hex(), "S-MAC", s_mac.hex(), "S-RMAC", s_rmac.hex())
print("card cryptogram", kdf(s_mac, 0, 64, ctx)[:8].hex(), "logged", IU_RESPONSE[21:29].hex())
host_cryptogram = kdf(s_mac, 1, 64, ctx)[:8]
ea_head = h("8482330010") + host_cryptogram  # nxScp03_GP_ExternalAuthenticate
mcv = cmac(s_mac, bytes(16) + ea_head)
print("EXTERNAL AUTHENTICATE", (ea_head + mcv[:8]).hex(), "MCV", mcv.hex())

counter = 1  # commandCounter after authentication (nxScp03_AuthenticateChannel)


def wrap(header, data, hasle, lc_form=None):
    """se05x_Transform_scp without an applet session; returns the wire bytes."""
    global mcv
    if data:
        enc = cbc(s_enc, ecb(s_enc, counter.to_bytes(16, "big")), pad(data))
    else:
        enc = b""
    lc = len(enc) + 8
    extended = (lc >= 0xFF or hasle) if lc_form is None else lc_form == "extended"
    lc_field = (b"\x00" + lc.to_bytes(2, "big")) if extended else bytes([lc])
    hdr = bytes([header[0] | 0x04]) + header[1:]
    mac = cmac(s_mac, mcv + hdr + lc_field + enc)
    wire = hdr + lc_field + enc + mac[:8] + (b"\x00\x00" if hasle else b"")
    return wire, mac


def card_response(data, command_had_data):
    """The card's answer the way nxpSCP03_Decrypt_ResponseAPDU / nxpSCP03_Get_ResponseICV
    undo it: ICV = AES(S-ENC, counter (minus one after a data-less command), first byte 80)."""
    c = counter if command_had_data else counter - 1
    block = bytearray(c.to_bytes(16, "big"))
    block[0] = 0x80
    enc = cbc(s_enc, ecb(s_enc, bytes(block)), pad(data)) if data else b""
    sw = h("9000")
    rmac = cmac(s_rmac, mcv + enc + sw)[:8]
    return enc + rmac + sw


def step(name, header, data, hasle, response_plain, lc_form=None, keep_mcv=True, host_le=""):
    """host_le: what the host appends after the C-MAC where NXP appends nothing (its short
    Le `00`: not MACed, so the rest of the bytes stay NXP's)."""
    global counter, mcv
    saved = mcv
    wire, mac = wrap(header, data, hasle, lc_form)
    mcv = mac
    rsp = card_response(response_plain, bool(data))
    print(name, "cmd", wire.hex(), "+ host " + host_le if host_le else "")
    print(name, "rsp", rsp.hex())
    if data:  # nxpSCP03_Decrypt_ResponseAPDU: Inc_CommandCounter when cmdBufLen > 0
        counter += 1
    if not keep_mcv:
        mcv = saved


KEY = h("70000010")
CHIP_PUB = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")[::-1]
PEER = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")[::-1]
SECRET = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")[::-1]
VERSION = h("0702003f9fffff")

# Se05x_API_GetVersion: Case2 (hasle 0), no data.
step("1 GetVersion", h("80040020"), b"", False, h("4107") + VERSION, host_le="00")
# Se05x_API_ReadObject: Case4_ext (hasle 1).
step("2 ReadObject", h("80020000"), h("4104") + KEY, True, h("4120") + CHIP_PUB)
# Se05x_API_CheckObjectExists: Case4 (hasle 0).
step("3 CheckObjectExists", h("80040027"), h("4104") + KEY, False, h("410101"), host_le="00")
# Se05x_API_GetVersion again: after three commands, two with data.
step("4 GetVersion", h("80040020"), b"", False, h("4107") + VERSION, host_le="00")
# Se05x_API_ECDHGenerateSharedSecret: Case4_ext (hasle 1) -> NXP's wire; and the same step
# with a short Lc (the host's form) from the same state.
step("5 ECDH (NXP form)", h("8003010F"), h("4104") + KEY + h("4220") + PEER, True,
     h("4120") + SECRET, keep_mcv=False)
counter -= 1
step("5 ECDH (short Lc, Le 00)", h("8003010F"), h("4104") + KEY + h("4220") + PEER, False,
     h("4120") + SECRET, lc_form="short", host_le="00")


# ---- PUT KEY (replace key set KVN 0B), not pinned in a test (see SOURCES.md) ----
# OP-TEE/optee_os core/drivers/crypto/se050/adaptors/utils/scp_config.c prepare_key_data /
# encrypt_key_and_get_kcv (AES-ECB under the current DEK, KCV = AES-ECB(key, 01 x 16)[:3]) and
# adaptors/apis/apdu.c se050_scp03_send_rotate_cmd (80 D8 KVN 81, NXP DoAPDUTxRx_s_Case4).
DEK = h("6702DAC30942B2C85E7F47B42CED4E7F")
new_keys = [h("000102030405060708090a0b0c0d0e0f"), h("101112131415161718191a1b1c1d1e1f"),
            h("202122232425262728292a2b2c2d2e2f")]
data = b"\x0b"
kcvs = b"\x0b"
for k in new_keys:
    kcv = ecb(k, bytes([1] * 16))[:3]
    data += h("881110") + ecb(DEK, k) + b"\x03" + kcv
    kcvs += kcv
print("== PUT KEY ==")
print("plain PUT KEY (NXP Case4, no Le)", (h("80D80B81") + bytes([len(data)]) + data).hex())
print("expected answer", (kcvs + h("9000")).hex())
