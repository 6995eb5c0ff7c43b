//! Helper binaries of the benchmark (`bench/run`). Each subcommand does one measurement job and
//! prints its figures as `key=value` lines on stdout, which the driver script parses.

mod aead_rate;
mod args;
mod derive_rate;
mod flood;
mod keys;
mod rekey;
mod scp03_cost;
mod sign_rate;
mod stream;
mod token;

use std::process::ExitCode;

const USAGE: &str = "usage: wg-bench <command> [--option value ...]
commands:
  stream-send  --to IP:PORT [--interval-us 1000] --seconds S
  stream-recv  --bind IP:PORT --seconds S
  rekey-peer   --bind IP:PORT --endpoint IP:PORT --private B64 --peer-public B64
               --inner-src IP --inner-dst IP --dst-port P [--rekeys 20] [--rekey-interval-ms 300]
               [--interval-us 1000] [--settle-ms 1000]
  flood        --to IP:PORT --responder-public B64 --rate PPS --seconds S
  derive-rate  --module PATH [--label NAME] [--pin PIN] [--seconds S]
  sign-rate    --module PATH [--pin PIN] [--seconds S]
  scp03-cost   [--seconds S]
  keys         --count N
  aead-rate    [--size 1420] [--seconds 2]";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match args::Options::parse(rest) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("wg-bench {command}: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command.as_str() {
        "stream-send" => stream::send(&options),
        "stream-recv" => stream::receive(&options),
        "rekey-peer" => rekey::run(&options),
        "flood" => flood::run(&options),
        "derive-rate" => derive_rate::run(&options),
        "sign-rate" => sign_rate::run(&options),
        "scp03-cost" => scp03_cost::run(&options),
        "keys" => keys::run(&options),
        "aead-rate" => aead_rate::run(&options),
        _ => Err(format!("unknown command {command:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wg-bench {command}: {e}");
            ExitCode::FAILURE
        }
    }
}
