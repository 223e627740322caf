use clap::Parser;

fn main() {
    // Like other command-line tools, end quietly when the reader of our output goes away (`| head`)
    // instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A flag that does not parse is bad input like any other: its message, then exit status 1 (clap's own
    // exit would use 2). --help and --version print to stdout and exit 0.
    let cli = match gpu_ae::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if let Err(e) = gpu_ae::cli::run(cli) {
        eprintln!("error: {}", gpu_ae::cli::error_text(&e));
        std::process::exit(1);
    }
}
