"""The report's sections of parts 2 to 5: handshakes, module overhead, memory, flood."""

from mdtable import fmt, small_gap


def rekey_section(results):
    rows = results.get("rekey")
    if rows is None:
        return []
    lines = ["## 2. The token on the handshake path", "",
             f"A peer run in-process by boringtun's `Tunn` (`wg-bench rekey-peer`, namespace B) "
             f"forces {results['args']['rekeys']} handshakes, one every 300 ms, with "
             "`format_handshake_initiation(force_resend = true)`; the daemon under test "
             "(namespace A) answers them as responder, so each costs it its static-key DH `es`. "
             "Meanwhile a UDP stream of one packet per ms runs each way through the tunnel; the "
             "longest gap between two arrivals is the longest time the data path stood still. "
             "Handshake time: initiation sent to response received, at the peer. The first row "
             "runs the same streams over the bare veth, without a tunnel: the gaps this machine's "
             "scheduler makes by itself. Because those are there too, every gap over 2 ms is listed "
             "with its time and compared with the handshake windows (initiation sent to response "
             "received, + 2 ms): a data path that waited for the token would show gaps as long as "
             "the token operation overlapping the windows; the scheduler's gaps fall in them only in "
             "proportion to the windows' share of the time (\"expected by chance\"). A data path that "
             "waits for the token stalls in every handshake; the scheduler hits only some: the "
             "median over the handshakes of the longest gap in each tells the two apart, and is "
             "what the < 5 ms target is read on.", "",
             "![handshake gaps](handshake.svg)", "",
             "| daemon (responder) | handshakes completed | handshake ms median / max | longest gap ms, any time (into / out of daemon) | longest gap ms overlapping a handshake (into / out) | per handshake: median of its longest gap, ms | handshakes with a gap > 5 ms | gaps > 2 ms overlapping a handshake / all (expected by chance) | gaps > 5 ms | stream packets lost (in / out) | token ops | token ops per handshake |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | | | | | | |")
            continue
        if "rekeys_completed" not in row:  # the noise floor: streams without a tunnel
            lines.append(f"| {row['name']} | - | - | {fmt(row['gap_into_daemon_ms'], 2)} / "
                         f"{fmt(row['gap_from_daemon_ms'], 2)} | - | - | - | - | {row['gaps_over_5ms']} | "
                         f"{row['lost_into_daemon']} / {row['lost_from_daemon']} | - | - |")
            continue
        if row.get("latency_ms") is None:
            ops = per = "n/a (key in memory)"
        elif "token_ops" in row:
            ops, per = str(row["token_ops"]), f"{row['token_ops_per_handshake']:.2f}"
        else:
            ops, per = f"not measured: {row.get('token_ops_not_measured')}", "-"
        lines.append(f"| {row['name']} | {row['rekeys_completed']}/{row['rekeys_sent']} | "
                     f"{fmt(row['handshake_ms_median'], 2)} / {fmt(row['handshake_ms_max'], 2)} | "
                     f"{fmt(row['gap_into_daemon_ms'], 2)} / {fmt(row['gap_from_daemon_ms'], 2)} | "
                     f"{fmt(row.get('hs_gap_into_daemon_ms'), 2)} / {fmt(row.get('hs_gap_from_daemon_ms'), 2)} | "
                     f"{small_gap(row.get('per_handshake_gap_ms_median'))} | "
                     f"{row.get('handshakes_with_gap_over_5ms', '-')}/{row['rekeys_completed']} | "
                     f"{row.get('long_gaps_during_handshakes', '-')} / {row.get('long_gaps', '-')} "
                     f"({row.get('long_gaps', 0) * row.get('handshake_time_share', 0):.0f}) | "
                     f"{row['gaps_over_5ms']} | "
                     f"{row['lost_into_daemon']} / {row['lost_from_daemon']} | {ops} | {per} |")
    lines.append("")
    return lines


def module_section(results):
    """Part 3: C_DeriveKey, what SCP03 adds to it, C_Sign; any of them (`--only`)."""
    if all(results.get(key) is None for key in ("derive", "scp03", "sign")):
        return []
    lines = ["## 3. Module overhead", ""]
    if any("not_measured" not in (results.get(key) or {"not_measured": 1})
           for key in ("derive", "sign")):
        lines += ["![module overhead](module.svg)", ""]
    lines += derive_lines(results.get("derive"))
    lines += scp03_section(results)
    lines += sign_section(results)
    return lines


def derive_lines(row):
    if row is None:
        return []
    lines = ["`wg-bench derive-rate`: C_DeriveKey (CKM_ECDH1_DERIVE, then C_GetAttributeValue of "
             "the secret and C_DestroyObject, as wg-pkcs11 does per handshake) through "
             "libpkcs11_se050.so via cryptoki on the virtual SE050 at 0 ms latency, against a bare "
             "x25519-dalek Diffie-Hellman, in the same process.", ""]
    if row.get("not_measured"):
        lines.append(f"Not measured: {row['not_measured']}")
    else:
        lines += ["| | per second | µs each |", "|---|---:|---:|",
                  f"| C_DeriveKey through the module | {fmt(row['derive_per_s'])} | {fmt(row['derive_us'], 1)} |",
                  f"| bare x25519-dalek DH | {fmt(row['bare_dh_per_s'])} | {fmt(row['bare_dh_us'], 1)} |",
                  "", f"Overhead ratio (time per C_DeriveKey / time per bare DH): "
                      f"**{row['overhead_ratio']:.2f}**"]
        if "chip_ecdh_per_derive" in row:
            lines.append(f"\nECDHs counted by the virtual chip per C_DeriveKey: "
                         f"{row['chip_ecdh_per_derive']:.2f}.")
    lines.append("")
    return lines


def sign_section(results):
    """Issue 22: C_Sign through the module against a bare software signature."""
    row = results.get("sign")
    if row is None:
        return []
    lines = ["### Signatures through the module", "",
             "`wg-bench sign-rate`: C_Sign (CKM_ECDSA_SHA256 on a P-256 key, CKM_EDDSA on an "
             "Ed25519 key; each signature verified on the host by the module) on the virtual "
             "SE050 at 0 ms latency, against RustCrypto p256 / ed25519-dalek in the same process.",
             ""]
    if row.get("not_measured"):
        return lines + [f"Not measured: {row['not_measured']}", ""]
    return lines + ["| | per second |", "|---|---:|",
                    f"| C_Sign ECDSA P-256 through the module | {fmt(row['ecdsa_sign_per_s'])} |",
                    f"| bare p256 ECDSA | {fmt(row['bare_ecdsa_per_s'])} |",
                    f"| C_Sign Ed25519 through the module | {fmt(row['eddsa_sign_per_s'])} |",
                    f"| bare ed25519-dalek | {fmt(row['bare_eddsa_per_s'])} |",
                    "", f"Overhead ratios: ECDSA **{row['ecdsa_overhead_ratio']:.2f}**, "
                        f"Ed25519 **{row['eddsa_overhead_ratio']:.2f}**", ""]


def i2c_ms(bytes_, transfers, hz):
    """I2C time of `bytes_` data bytes and one address byte per transfer, 9 clocks a byte."""
    return (bytes_ + transfers) * 9 / hz * 1000


def scp03_section(results):
    row = results.get("scp03")
    if row is None:
        return []
    lines = ["### PlatformSCP03 cost per C_DeriveKey", "",
             "Through the module: `derive-rate` with `scp03_keys` set, on a virtual chip that "
             "requires Platform SCP. On the counted bus (`wg-bench scp03-cost`): the module's host "
             "stack (lock, secure channel or not, T=1) on one virtual chip each, bytes on the I2C "
             "bus counted; I2C time = (bytes + one address byte per transfer) x 9 clocks.", ""]
    if row.get("not_measured"):
        return lines + [f"Not measured: {row['not_measured']}", ""]
    derive = results.get("derive") or {}
    if "derive_us" in derive:
        lines.append(f"C_DeriveKey through the module: {derive['derive_us']:.1f} µs plain, "
                     f"{row['module_scp03_derive_us']:.1f} µs with SCP03.")
        lines.append("")
    lines += ["| link | APDUs | bytes on the bus | µs (virtual chip) | I2C ms at 400 kHz | at 1 MHz |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, key in [("plain", "plain"), ("SCP03, channel open", "scp03"),
                      ("SCP03, channel re-opened first", "scp03_reopen")]:
        b, t = row[f"{key}_bytes_per_derive"], row[f"{key}_transfers_per_derive"]
        lines.append(f"| {name} | {row[f'{key}_apdus_per_derive']:.0f} | {b:.0f} | "
                     f"{row[f'{key}_us_per_derive']:.0f} | {i2c_ms(b, t, 400e3):.2f} | "
                     f"{i2c_ms(b, t, 1e6):.2f} |")
    lines.append("")
    return lines


def memory_section(results):
    data = results.get("memory")
    if data is None:
        return []
    lines = ["## 4. Memory", "",
             f"Resident memory of the daemon process (VmRSS; Pss from smaps_rollup), "
             f"{results['args']['idle_seconds']:.0f} s after start, idle, with 1 peer and with "
             f"{data['peers']} configured peers (generated keys, one /32 each).", "",
             "![memory](memory.svg)", "",
             f"| daemon | RSS 1 peer | RSS {data['peers']} peers | per extra peer (RSS) | Pss 1 peer | Pss {data['peers']} peers | per extra peer (Pss) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in data["implementations"]:
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | |")
            continue
        if "many" not in row or "per_peer_kib" not in row:
            lines.append(f"| {row['name']} | incomplete: {row.get('not_measured', '?')} | | | | | |")
            continue
        one, many = row["one"], row["many"]
        lines.append(f"| {row['name']} | {one['rss_kib'] / 1024:.1f} MiB | {many['rss_kib'] / 1024:.1f} MiB | "
                     f"{row['per_peer_kib']:.2f} KiB | {one.get('pss_kib', 0) / 1024:.1f} MiB | "
                     f"{many.get('pss_kib', 0) / 1024:.1f} MiB | {row.get('per_peer_pss_kib', 0):.2f} KiB |")
        if row.get("warning"):
            lines.append(f"| | warning: {row['warning']} | | | | | |")
    lines.append("")
    return lines


def flood_section(results):
    rows = results.get("flood")
    if rows is None:
        return []
    args = results["args"]
    lines = ["## 5. Initiation flood", "",
             f"`wg-bench flood` in a third namespace C sends handshake initiations with a valid "
             f"mac1 (random ephemeral key and ciphertext) at {args['flood_rate']}/s for "
             f"{args['flood_seconds']:.0f} s to the daemon in A, while a legitimate wireguard-go "
             "peer in B pings it every 10 ms through its established tunnel, and a second "
             "legitimate peer (boringtun's `Tunn` in-process, `wg-bench rekey-peer`) forces a new "
             "handshake every 300 ms (it answers cookie replies, as a real peer does). The flood "
             "never answers cookie replies. Token ops: ECDHs the virtual SE050 counted during the "
             "flood, the legitimate peer's handshakes included.",
             "",
             "| daemon under flood | initiations sent (rate) | cookie replies | handshake responses | token ops | legit ping loss | ping avg / max ms | legit handshakes completed (median / max ms) | tunnel after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | | | |")
            continue
        if "legit_rekeys_sent" in row:
            legit = (f"{row['legit_rekeys_completed']}/{row['legit_rekeys_sent']} "
                     f"({fmt(row['legit_handshake_ms_median'], 1)} / {fmt(row['legit_handshake_ms_max'], 1)})")
        else:
            legit = f"not measured: {row.get('legit_rekeys_not_measured', '?')}"
        if "token_ops" in row:
            ops = str(row["token_ops"])
        elif "token_ops_not_measured" in row:
            ops = f"not measured: {row['token_ops_not_measured']}"
        else:
            ops = "n/a (key in memory)"
        lines.append(f"| {row['name']} | {row['sent']:,} ({row['rate_achieved']:,.0f}/s) | "
                     f"{row['cookie_replies']:,} | {row['responses']} | {ops} | "
                     f"{fmt(row.get('ping_loss_percent'), 1)}% | {fmt(row.get('ping_avg_ms'), 2)} / "
                     f"{fmt(row.get('ping_max_ms'), 2)} | {legit} | "
                     f"{'up' if row.get('tunnel_after') else '**down**'} |")
    lines.append("")
    return lines
