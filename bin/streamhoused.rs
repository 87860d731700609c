//! `streamhoused`: the StreamHouse server. See `streamhoused --help`.

use std::process::ExitCode;
use streamhouse::server::flags::{self, Parsed};
use streamhouse::server::Server;

fn main() -> ExitCode {
    streamhouse::logging::init();
    let env = |k: &str| std::env::var(k).ok();
    let config = match flags::parse(std::env::args_os().skip(1).collect(), &env) {
        Ok(Parsed::Help) => {
            print!("{}", flags::help());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("streamhoused {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(c)) => c,
        Err(e) => {
            eprintln!("streamhoused: {e}");
            return ExitCode::from(2);
        }
    };
    // Signals first, so a SIGTERM during recovery is not lost.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("streamhoused: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let server = match Server::start(&config) {
        Ok(s) => s,
        // Exit 2 as for a bad flag: the systemd unit does not restart on
        // it (RestartPreventExitStatus=2), as no restart would help.
        Err(e @ streamhouse::Error::Config(_)) => {
            eprintln!("streamhoused: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("streamhoused: {e}");
            return ExitCode::from(1);
        }
    };
    // Tests and scripts read the bound address from this line.
    println!("streamhoused listening on {}", server.addr());
    if let Some(m) = server.metrics_addr() {
        println!("streamhoused metrics on http://{m}/metrics");
    }
    if let Some(k) = server.kafka_addr() {
        println!("streamhoused kafka on {k}");
    }
    log::info!("listening on {}", server.addr());
    for sig in signals.forever() {
        if sig == signal_hook::consts::SIGHUP {
            // Certificates renewed: re-read them; the users file is read
            // at each authentication anyway.
            server.reload_tls();
            continue;
        }
        log::info!("signal {sig}: shutting down");
        break;
    }
    server.shutdown();
    ExitCode::SUCCESS
}
