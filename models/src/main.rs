//! `models`: evaluate and train the paper's networks on CIFAR-10, with cs-init.

use clap::Parser;

use models::cli::Cli;

/// Training allocates and frees activation buffers of 100+ MB every step. glibc serves blocks
/// that large with fresh `mmap`s and returns them on free, so every step would fault in and
/// clear the same memory again (a fifth of CPU training time); keeping them in the heap lets the
/// next step reuse them.
fn keep_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() {
    keep_large_allocations();
    if let Err(error) = Cli::parse().command.run() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
