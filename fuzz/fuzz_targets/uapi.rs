//! The UAPI request parser (`get=1` / `set=1` streams as a client writes them to the
//! socket) and the `get` answer parser a client uses: a request or a clear errno error for
//! any bytes; a parsed `set` serialises to lines that parse back to the same request.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use wg_pkcs11::uapi::{
    parse_device, parse_set, read_request, serialize_set, PeerUpdate, Request, SetRequest,
};

/// A removed peer's other settings do not apply and are not written back.
fn removals_bare(mut request: SetRequest) -> SetRequest {
    for peer in &mut request.peers {
        if peer.remove {
            *peer = PeerUpdate {
                public_key: peer.public_key,
                remove: true,
                ..PeerUpdate::default()
            };
        }
    }
    request
}

fuzz_target!(|data: &[u8]| {
    let mut reader = BufReader::new(data);
    // A connection carries requests until it closes or one is refused.
    for _ in 0..16 {
        match read_request(&mut reader) {
            Ok(None) => break,
            Ok(Some(Request::Get)) => {}
            Ok(Some(Request::Set(request))) => {
                let text = serialize_set(&request);
                let body = text
                    .strip_prefix("set=1\n")
                    .unwrap_or(&text)
                    .trim_end_matches('\n');
                let again = parse_set(body.lines()).expect("a serialised set parses");
                assert_eq!(
                    again,
                    removals_bare(request),
                    "set round trip through `{text}`"
                );
            }
            Err(e) => {
                assert!(e.errno > 0 && !e.message.is_empty(), "{e:?}");
                break;
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = parse_device(text) {
            assert!(e.errno > 0, "{e:?}");
        }
    }
});
