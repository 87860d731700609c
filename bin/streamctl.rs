//! `streamctl`: the StreamHouse command-line client. See `streamctl --help`.

fn main() {
    let code = streamhouse::cli::run(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
