//! Smoke test of the benchmark: a tiny run against the test broker completes and writes a
//! well-formed report. It asserts the shape of the report, never a speed.

mod common;

use std::process::Command;

use common::*;

#[test]
fn benchmark_tiny_run_completes_and_writes_a_well_formed_report() {
    let results = std::env::temp_dir().join(unique("bench-results"));
    let output = Command::new(env!("CARGO_BIN_EXE_consent-enforcer-bench"))
        .args([
            "run", "--users", "2000", "--events", "3000", "--rounds", "1",
        ])
        .args(["--latency-seconds", "1", "--bootstrap", bootstrap()])
        .arg("--results")
        .arg(&results)
        .output()
        .expect("run the benchmark");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "benchmark failed: {stderr}");
    let markdown = String::from_utf8_lossy(&output.stdout);
    assert!(
        markdown.contains("| events/s in (median) |"),
        "no table printed: {markdown}"
    );

    let saved: Vec<_> = std::fs::read_dir(&results)
        .expect("results folder")
        .map(|entry| entry.expect("entry").path())
        .collect();
    let json_path = saved
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    assert!(
        saved
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "md")),
        "a Markdown report"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json_path).expect("read report")).expect("JSON");

    assert!(report["cores"].as_u64().is_some_and(|c| c >= 1));
    assert!(report["revision"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(report["settings"]["users"], 2000);
    for system in ["enforcer", "baseline"] {
        let runs = report[system].as_array().expect("runs");
        assert_eq!(runs.len(), 1, "{system}: one round");
        assert_eq!(runs[0]["events"], 3000, "{system}: every event processed");
        assert!(runs[0]["events_per_second"]
            .as_f64()
            .is_some_and(|v| v > 0.0));
        assert!(runs[0]["cpu_seconds"].as_f64().is_some_and(|v| v > 0.0));
        assert!(runs[0]["peak_rss_bytes"].as_u64().is_some_and(|v| v > 0));
        let latency = &report["latency"][system];
        assert!(
            latency["samples"].as_u64().is_some_and(|n| n > 0),
            "{system}: latency samples"
        );
        assert!(latency["p99_ms"]
            .as_f64()
            .is_some_and(|v| v >= latency["p50_ms"].as_f64().unwrap_or(f64::MAX)));
    }
    assert!(report["fanout"].as_f64().is_some_and(|f| f > 0.0));
    // 1 % of the generated events are malformed: about 30 of 3,000 go to the dead-letter
    // topic, and the baseline copies the same share there.
    assert!(report["dead_letter_share"]
        .as_f64()
        .is_some_and(|s| s > 0.0 && s < 0.05));
    assert_eq!(report["settings"]["destination_partitions"], 6);
    assert!(report["consent_states"]
        .as_u64()
        .is_some_and(|n| n > 0 && n <= 2000));
    assert!(report["consent_table"]["bytes_per_user_beyond_key"]
        .as_f64()
        .is_some_and(|b| b > 0.0));
    assert!(!report["ratios"].as_array().expect("ratios").is_empty());
    let _ = std::fs::remove_dir_all(&results);
}
