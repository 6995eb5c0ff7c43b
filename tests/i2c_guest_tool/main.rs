//! `e2e-i2c-guest`: the programs the I2C guest (tests/i2c_kernel.rs) runs inside its VM.
//!
//! ```text
//!   e2e-i2c-guest gadget osif|tiny-usb HOST:PORT   a USB I2C adapter's device side (gadget.rs)
//!   e2e-i2c-guest keygen LABEL          a key pair on the token; prints its public key (hex)
//!   e2e-i2c-guest ecdh LABEL PEER_HEX   C_DeriveKey with the pair LABEL; prints the secret (hex)
//! ```
//! The token commands load the module named by `$E2E_MODULE` and read its configuration from
//! `$PKCS11_SE050_CONF`, as any PKCS#11 application would.

mod gadget;
mod relay_wire;
mod token;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["gadget", adapter, relay] => {
            gadget::Adapter::parse(adapter).and_then(|a| gadget::run(a, relay))
        }
        ["keygen", label] => token::keygen(label),
        ["ecdh", label, peer] => token::ecdh(label, peer),
        _ => Err(format!(
            "usage: e2e-i2c-guest gadget osif|tiny-usb HOST:PORT | keygen LABEL | ecdh LABEL PEER_HEX (got {args:?})"
        )),
    };
    if let Err(message) = result {
        eprintln!("e2e-i2c-guest: {message}");
        std::process::exit(1);
    }
}
