//! etcd flags whose silent loss would change safety (certificate revocation lists,
//! skipping the SAN check of peers, discovery, the v2 proxy; also when set in a
//! `--config-file`) make the real binary refuse to start, with a clear reason and before
//! it creates anything; set to their off values they are accepted. (etcd implements them;
//! Bramble does not yet.)

use std::process::Command;

use bramble_tests::tools::bramble_bin;

/// Runs bramble with `args` (plus a data dir) or the `env` variable set; returns whether it
/// started serving within a few seconds (it is killed then), its stderr, and whether the
/// data dir was created.
fn run(args: &[&str], env: Option<(&str, &str)>) -> (Option<i32>, String, bool) {
    let dir = bramble_testkit::temp::dir("bramble-refused-flags-");
    let data = dir.path().join("data");
    let mut cmd = Command::new(bramble_bin());
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["--listen-client-urls", "http://127.0.0.1:0"])
        .args(["--advertise-client-urls", "http://127.0.0.1:2379"])
        .args(["--listen-peer-urls", "http://127.0.0.1:0"])
        .args(args);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning bramble");
    let out = wait_with_timeout(child, std::time::Duration::from_secs(5));
    (out.0, out.1, data.exists())
}

/// The exit code (None: still running after `limit`, then killed) and stderr.
fn wait_with_timeout(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> (Option<i32>, String) {
    let start = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("waiting for bramble") {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut err);
    }
    (code, err)
}

/// Command-line flags and an `ETCD_*` variable (name, value) for one run.
type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);

#[test]
fn safety_flags_refuse_to_start_and_create_nothing() {
    let cases: &[Case] = &[
        (&["--experimental-peer-skip-client-san-verification"], None),
        (&["-client-crl-file", "/etc/etcd/pki/crl.pem"], None),
        (&["--proxy=on"], None),
        (&["--discovery-srv", "example.com"], None),
        (&[], Some(("ETCD_PEER_CRL_FILE", "/etc/etcd/pki/crl.pem"))),
    ];
    for (args, env) in cases {
        let (code, stderr, created) = run(args, *env);
        assert_eq!(code, Some(1), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("Refusing to start"),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(!created, "{args:?} {env:?}: the data dir was created");
    }
}

#[test]
fn safety_flags_set_off_are_accepted() {
    let (code, stderr, created) = run(
        &[
            "--client-crl-file=",
            "--experimental-peer-skip-client-san-verification=false",
            "--force-new-cluster=false",
            "--experimental-initial-corrupt-check=false",
        ],
        None,
    );
    assert_eq!(code, None, "bramble did not keep running: {stderr}");
    assert!(created, "{stderr}");
}

/// `--auth-token jwt,...` (not implemented) and a `--bcrypt-cost` outside bcrypt's range
/// refuse to start, by flag or `ETCD_*` variable; simple tokens and a valid cost start.
#[test]
fn auth_flags_refuse_jwt_and_bad_costs() {
    let jwt = "jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS256,ttl=10m";
    let cases: &[(Case, &str)] = &[
        (
            (&["--auth-token", jwt], None),
            "JWT tokens are not supported",
        ),
        (
            (&[], Some(("ETCD_AUTH_TOKEN", jwt))),
            "JWT tokens are not supported",
        ),
        ((&["--auth-token=opaque"], None), "unknown token type"),
        (
            (&["--bcrypt-cost=3"], None),
            "--bcrypt-cost 3: must be between 4 and 31",
        ),
        (
            (&["--bcrypt-cost=32"], None),
            "--bcrypt-cost 32: must be between 4 and 31",
        ),
    ];
    for ((args, env), reason) in cases {
        let (code, stderr, created) = run(args, *env);
        assert_eq!(code, Some(1), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?} {env:?}: {stderr}");
        assert!(!created, "{args:?} {env:?}: the data dir was created");
    }
    let (code, stderr, created) = run(
        &[
            "--auth-token=simple",
            "--bcrypt-cost=4",
            "--auth-token-ttl=10",
        ],
        None,
    );
    assert_eq!(code, None, "bramble did not keep running: {stderr}");
    assert!(created, "{stderr}");
}
