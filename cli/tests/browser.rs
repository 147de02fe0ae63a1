//! The web page in a real browser: headless Chromium loads `GET /`, a job is submitted through
//! the page's own form, and the page shows the job's live curve and then its table. A screenshot
//! is written to `target/browser/page.png` for a person to look at.
//!
//! Needs Chromium (`apt-get install chromium`; `CS_INIT_CHROMIUM` names another binary). Without
//! it the test says so and passes, unless `CS_INIT_REQUIRE_BROWSER=1` (CI sets it).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::server::{Options, Server};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

fn chromium() -> Option<PathBuf> {
    let named = std::env::var_os("CS_INIT_CHROMIUM").map(PathBuf::from);
    let found = named.or_else(|| {
        [
            "/usr/bin/chromium",
            "/usr/bin/chromium-browser",
            "/usr/bin/google-chrome",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    });
    if found.is_none() {
        let required = std::env::var("CS_INIT_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "CS_INIT_REQUIRE_BROWSER=1 but no Chromium was found"
        );
        eprintln!("skipped: no Chromium found (apt-get install chromium, or set CS_INIT_CHROMIUM)");
    }
    found
}

/// Evaluates `script` in the page until it returns true.
fn wait_for(tab: &Tab, script: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let value = tab.evaluate(script, false).unwrap().value;
        if value == Some(serde_json::Value::Bool(true)) {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "the page never got to `{script}`; it shows: {}",
            tab.evaluate("document.body.innerText", false)
                .ok()
                .and_then(|v| v.value)
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_submitted_through_the_page_completes_and_shows_its_table() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &Options::default());
    let profile = dir.path().join("chromium-profile");
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1280, 1400)))
            .user_data_dir(Some(profile))
            .idle_browser_timeout(Duration::from_secs(300))
            .args(
                [
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                ]
                .iter()
                .map(OsStr::new)
                .collect(),
            )
            .build()
            .unwrap(),
    )
    .expect("Chromium starts");
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(60));
    tab.navigate_to(&server.base).unwrap();
    tab.wait_until_navigated().unwrap();
    tab.wait_for_element("#job-form").unwrap();

    // Fill in the form as a person would, then press Run.
    tab.evaluate("document.getElementById('builtin').value = 'cnn2'", false)
        .unwrap();
    let iters = tab.wait_for_element("#iters").unwrap();
    iters.click().unwrap();
    tab.evaluate("document.getElementById('iters').value = ''", false)
        .unwrap();
    iters.type_into("400").unwrap();
    let lr = tab.wait_for_element("#lr").unwrap();
    lr.click().unwrap();
    tab.evaluate("document.getElementById('lr').value = ''", false)
        .unwrap();
    lr.type_into("0.01").unwrap();
    tab.wait_for_element("#keep_norm").unwrap().click().unwrap();
    tab.wait_for_element("#submit-button")
        .unwrap()
        .click()
        .unwrap();

    // The job appears in the list and its curves are drawn while it runs.
    wait_for(
        &tab,
        "document.querySelectorAll('#job-list tbody tr').length === 1",
        Duration::from_secs(60),
    );
    wait_for(
        &tab,
        "document.querySelectorAll('#chart path').length >= 1",
        Duration::from_secs(120),
    );
    // Then the result: the table with one row per conv tensor, and the download links.
    wait_for(
        &tab,
        "!document.getElementById('result').hidden && \
         document.querySelectorAll('#layers tbody tr').length === 4",
        Duration::from_secs(300),
    );
    let text = tab
        .evaluate("document.getElementById('result').innerText", false)
        .unwrap()
        .value
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    for needle in [
        "conv1.weight",
        "conv4.weight",
        "cnn2.cs.safetensors",
        "report.json",
        "4 of 4 conv tensors optimized",
        "mean feature-map |cos|",
        "mean filter norm ratio",
    ] {
        assert!(text.contains(needle), "{needle} not in the result:\n{text}");
    }
    let state = tab
        .evaluate("document.getElementById('job-state').textContent", false)
        .unwrap()
        .value
        .unwrap();
    assert_eq!(state, "succeeded");
    let curves = tab
        .evaluate("document.querySelectorAll('#chart path').length", false)
        .unwrap()
        .value
        .unwrap();
    assert_eq!(curves, 4, "one curve per layer");

    // What the page showed is what the API says.
    let jobs = server.get("/v1/jobs").json();
    let job = &jobs["jobs"][0];
    assert_eq!(job["input"], "builtin:cnn2");
    assert_eq!(job["settings"]["iters"], 400);
    assert_eq!(job["settings"]["keep_norm"], true);
    assert_eq!(job["settings"]["lr"], 0.01);
    assert_eq!(job["state"], "succeeded");

    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../browser");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("page.png"), png).unwrap();
    eprintln!("screenshot: {}", out.join("page.png").display());
}
