use clap::Parser;

fn main() {
    // Like other command-line tools, end quietly when the reader of our output goes away (`| head`)
    // instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = gpu_ae::cli::Cli::parse();
    if let Err(e) = gpu_ae::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
