//! End-to-end tests of the install modules against real archives, real files and real processes.
//!
//! Every archive is built here with the `tar` crate (plain, gzip and zstd), every package
//! program is a real `#!/bin/sh` script with mode 0755, and the scripts report what they saw by
//! writing files into an `OUT` directory passed through the caller-supplied environment.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rollgate_agent::install::{
    current_version, install, prune_versions, switch_current, unpack_version, unpack_version_with_limits,
    InstallFailure, InstallRequest, Installed, Module, Phase, UnpackLimits, OUTPUT_TAIL_BYTES,
};

const PRODUCT: &str = "app";
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// One entry of a test archive.
enum Item {
    File(&'static str, Vec<u8>),
    /// A `#!/bin/sh` script with mode 0755; the body follows the shebang line.
    Script(&'static str, &'static str),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    /// A regular file whose name is written into the header byte for byte, bypassing the
    /// builder's own refusal of `..` and absolute paths.
    RawName(&'static str, Vec<u8>),
}

fn file(name: &'static str, contents: &str) -> Item {
    Item::File(name, contents.as_bytes().to_vec())
}

#[derive(Clone, Copy)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        match item {
            Item::File(name, data) => {
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, data.as_slice()).expect("append file");
            }
            Item::Script(name, body) => {
                let data = format!("#!/bin/sh\n{body}\n");
                header.set_mode(0o755);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, name, data.as_bytes()).expect("append script");
            }
            Item::Symlink(name, target) | Item::HardLink(name, target) => {
                let kind =
                    if matches!(item, Item::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                header.set_entry_type(kind);
                header.set_mode(0o777);
                header.set_size(0);
                header.set_path(name).expect("link path");
                header.set_link_name_literal(target).expect("link target");
                header.set_cksum();
                builder.append(&header, std::io::empty()).expect("append link");
            }
            Item::RawName(name, data) => {
                header.set_mode(0o644);
                header.set_size(data.len() as u64);
                let slot = &mut header.as_old_mut().name;
                slot[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                builder.append(&header, data.as_slice()).expect("append raw");
            }
        }
    }
    builder.into_inner().expect("finish tar")
}

fn compress(tar: Vec<u8>, compression: Compression) -> Vec<u8> {
    match compression {
        Compression::None => tar,
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&tar).expect("gzip");
            encoder.finish().expect("gzip")
        }
        Compression::Zstd => zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
    }
}

/// A temp dir holding the products dir, the archives and the scripts' `OUT` dir.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    products: PathBuf,
    out: PathBuf,
    env: Vec<(String, String)>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        // Canonical, so paths compare equal to what the scripts see from `pwd -P`.
        let root = dir.path().canonicalize().expect("canonical tempdir");
        let products = root.join("products");
        let out = root.join("out");
        fs::create_dir_all(&products).expect("products dir");
        fs::create_dir_all(&out).expect("out dir");
        let env = vec![("OUT".to_owned(), out.display().to_string()), ("EXTRA_SETTING".to_owned(), "yes".to_owned())];
        Fixture { _dir: dir, root, products, out, env }
    }

    fn archive(&self, name: &str, items: &[Item], compression: Compression) -> PathBuf {
        let path = self.root.join(name);
        fs::write(&path, compress(tar_bytes(items), compression)).expect("write archive");
        path
    }

    fn request<'a>(
        &'a self,
        version: &'a str,
        from_version: Option<&'a str>,
        module: Module,
        archive: &'a Path,
        step_timeout: Duration,
    ) -> InstallRequest<'a> {
        InstallRequest {
            products_dir: &self.products,
            product: PRODUCT,
            version,
            from_version,
            module,
            archive,
            env: &self.env,
            step_timeout,
        }
    }

    async fn install_files(&self, version: &str, items: &[Item]) -> Result<Installed, InstallFailure> {
        let archive = self.archive(&format!("{version}.tar"), items, Compression::None);
        let from = current_version(&self.products, PRODUCT);
        install(&self.request(version, from.as_deref(), Module::Files, &archive, STEP_TIMEOUT)).await
    }

    async fn install_script(
        &self,
        version: &str,
        from: Option<&str>,
        items: &[Item],
    ) -> Result<Installed, InstallFailure> {
        let archive = self.archive(&format!("{version}.tar"), items, Compression::None);
        install(&self.request(version, from, Module::Script, &archive, STEP_TIMEOUT)).await
    }

    fn product_dir(&self) -> PathBuf {
        self.products.join(PRODUCT)
    }

    fn current_file(&self, name: &str) -> String {
        fs::read_to_string(self.product_dir().join("current").join(name)).expect("read via current")
    }

    fn out_file(&self, name: &str) -> String {
        fs::read_to_string(self.out.join(name)).unwrap_or_else(|e| panic!("{name} was not written by a script: {e}"))
    }

    fn versions(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.product_dir().join("versions"))
            .map(|entries| entries.map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn current_link(&self) -> Option<PathBuf> {
        fs::read_link(self.product_dir().join("current")).ok()
    }
}

/// A health check that records which version it checked, then exits with `status`.
fn health(status: u8) -> Item {
    let body: &'static str = match status {
        0 => r#"echo "$ROLLGATE_VERSION" >> "$OUT/health.log"; exit 0"#,
        _ => r#"echo "$ROLLGATE_VERSION" >> "$OUT/health.log"; echo "database unreachable" >&2; exit 3"#,
    };
    Item::Script("rollgate-health", body)
}

#[tokio::test]
async fn files_install_switches_current_and_prunes_beyond_previous() {
    let fx = Fixture::new();
    let one = fx.install_files("1.0.0", &[file("data.txt", "one"), file("lib/x.txt", "x1")]).await;
    let one = one.expect("install 1.0.0");
    assert_eq!(one.version_dir, fx.product_dir().join("versions/1.0.0"));
    assert_eq!(one.previous_version, None);
    assert_eq!(fx.current_link(), Some(PathBuf::from("versions/1.0.0")));
    assert_eq!(fx.current_file("data.txt"), "one");
    assert_eq!(fx.current_file("lib/x.txt"), "x1");

    let two = fx.install_files("2.0.0", &[file("data.txt", "two")]).await.expect("install 2.0.0");
    assert_eq!(two.previous_version.as_deref(), Some("1.0.0"));
    assert_eq!(current_version(&fx.products, PRODUCT).as_deref(), Some("2.0.0"));
    assert_eq!(fx.current_file("data.txt"), "two");
    assert_eq!(fx.versions(), ["1.0.0", "2.0.0"], "the previous version is kept for rollback");

    fx.install_files("3.0.0", &[file("data.txt", "three")]).await.expect("install 3.0.0");
    assert_eq!(fx.versions(), ["2.0.0", "3.0.0"], "versions older than the previous are pruned");
    // No temporary symlinks or staging trees are left next to `current`.
    let mut leftovers: Vec<String> = fs::read_dir(fx.product_dir())
        .expect("product dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    leftovers.sort();
    assert_eq!(leftovers, [".staging", "current", "versions"]);
}

#[tokio::test]
async fn failing_health_reverts_to_the_previous_version_which_stays_healthy() {
    let fx = Fixture::new();
    fx.install_files("1.0.0", &[file("data.txt", "one"), health(0)]).await.expect("install 1.0.0");

    let failure =
        fx.install_files("2.0.0", &[file("data.txt", "two"), health(1)]).await.expect_err("2.0.0 is unhealthy");
    assert_eq!(failure.phase, Phase::Health);
    assert!(failure.reverted);
    assert_eq!(failure.previous_healthy, Some(true));
    assert_eq!(failure.previous_version.as_deref(), Some("1.0.0"));
    assert!(failure.reason.contains("exited with status 3"), "{}", failure.reason);
    assert!(failure.reason.contains("database unreachable"), "{}", failure.reason);
    assert!(failure.reason.contains("reverted to 1.0.0, which is healthy"), "{}", failure.reason);

    assert_eq!(fx.current_link(), Some(PathBuf::from("versions/1.0.0")));
    assert_eq!(fx.current_file("data.txt"), "one");
    // 1.0.0 checked at its install, 2.0.0 failed, then 1.0.0 checked again after reverting.
    assert_eq!(fx.out_file("health.log"), "1.0.0\n2.0.0\n1.0.0\n");
}

#[tokio::test]
async fn previous_version_that_is_unhealthy_too_is_reported() {
    let fx = Fixture::new();
    fx.install_files("1.0.0", &[file("data.txt", "one")]).await.expect("install 1.0.0");
    // 1.0.0 breaks after its install: its health check now fails too.
    let broken = fx.product_dir().join("versions/1.0.0/rollgate-health");
    fs::write(&broken, "#!/bin/sh\necho still broken >&2\nexit 1\n").expect("write health");
    fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");

    let failure = fx.install_files("2.0.0", &[health(1)]).await.expect_err("2.0.0 is unhealthy");
    assert_eq!(failure.phase, Phase::Health);
    assert!(failure.reverted);
    assert_eq!(failure.previous_healthy, Some(false));
    assert!(failure.reason.contains("still broken"), "{}", failure.reason);
    assert_eq!(current_version(&fx.products, PRODUCT).as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn first_install_with_failing_health_leaves_no_current() {
    let fx = Fixture::new();
    let failure = fx.install_files("1.0.0", &[file("data.txt", "one"), health(1)]).await.expect_err("unhealthy");
    assert_eq!(failure.phase, Phase::Health);
    assert!(failure.reverted, "`current` was switched, then removed");
    assert_eq!(failure.previous_healthy, None);
    assert_eq!(failure.previous_version, None);
    assert!(fs::symlink_metadata(fx.product_dir().join("current")).is_err());
    assert_eq!(current_version(&fx.products, PRODUCT), None);
}

/// True when the process no longer exists or is a zombie waiting to be reaped.
fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn health_timeout_kills_the_check_and_the_processes_it_started() {
    let fx = Fixture::new();
    let hang = Item::Script(
        "rollgate-health",
        r#"sleep 60 &
echo $! > "$OUT/background.pid"
sleep 60"#,
    );
    let archive = fx.archive("1.0.0.tar", &[file("data.txt", "one"), hang], Compression::None);
    let started = Instant::now();
    let failure = install(&fx.request("1.0.0", None, Module::Files, &archive, Duration::from_secs(1)))
        .await
        .expect_err("the health check hangs");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert_eq!(failure.phase, Phase::Health);
    assert!(failure.reason.contains("timed out"), "{}", failure.reason);
    assert!(failure.reverted);
    assert_eq!(current_version(&fx.products, PRODUCT), None);

    // The background `sleep` was in the check's process group, so it was killed with it.
    let pid: u32 = fx.out_file("background.pid").trim().parse().expect("pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        assert!(Instant::now() < deadline, "background process {pid} survived the timeout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn gzip_and_zstd_archives_are_detected_by_magic_bytes() {
    for (compression, magic, version) in [
        (Compression::Gzip, &[0x1f, 0x8b][..], "1.0.0-gz"),
        (Compression::Zstd, &[0x28, 0xb5, 0x2f, 0xfd][..], "1.0.0-zst"),
        (Compression::None, &[][..], "1.0.0-plain"),
    ] {
        let fx = Fixture::new();
        // The names say nothing about the format; only the bytes do.
        let archive = fx.archive("package.bin", &[file("data.txt", version)], compression);
        assert!(fs::read(&archive).expect("archive").starts_with(magic));
        install(&fx.request(version, None, Module::Files, &archive, STEP_TIMEOUT))
            .await
            .unwrap_or_else(|f| panic!("{version}: {f}"));
        assert_eq!(fx.current_file("data.txt"), version);
    }
}

/// Paths under the fixture that are not part of a product's versions, staging or `current`.
fn files_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read dir") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("file type");
            if entry.file_name() == name {
                found.push(entry.path());
            }
            if kind.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    found
}

#[tokio::test]
async fn archives_that_reach_outside_the_package_are_refused() {
    let cases: Vec<(&str, Vec<Item>)> = vec![
        ("dot-dot path", vec![Item::RawName("../../escape.txt", b"x".to_vec())]),
        ("absolute path", vec![Item::RawName("/tmp/escape.txt", b"x".to_vec())]),
        ("symlink out", vec![Item::Symlink("link", "../../../outside")]),
        ("absolute symlink", vec![Item::Symlink("link", "/etc")]),
        ("write through a symlink", vec![Item::Symlink("link", "../../../outside"), file("link/escape.txt", "x")]),
        ("hard link out", vec![Item::HardLink("passwd", "../../../outside/secret")]),
        // Each name stays inside on its own; together they climb out: `a` is the root itself,
        // so `a/a/up` sits at the root and `../..` leaves it.
        ("symlink chain", vec![Item::Symlink("a", "."), Item::Symlink("a/a/up", "../..")]),
    ];
    for (case, items) in cases {
        let fx = Fixture::new();
        let outside = fx.root.join("outside");
        fs::create_dir(&outside).expect("outside dir");
        fs::write(outside.join("secret"), "secret").expect("secret");
        let archive = fx.archive("evil.tar", &items, Compression::None);

        let failure = install(&fx.request("1.0.0", None, Module::Files, &archive, STEP_TIMEOUT)).await.expect_err(case);
        assert_eq!(failure.phase, Phase::Unpack, "{case}: {failure}");
        assert!(failure.reason.contains("refusing"), "{case}: {}", failure.reason);
        assert!(!failure.reverted, "{case}");
        assert!(files_named(&fx.root, "escape.txt").is_empty(), "{case}: wrote outside");
        assert_eq!(fs::read_dir(&outside).expect("outside").count(), 1, "{case}");
        assert!(fx.versions().is_empty(), "{case}: a refused version appeared");
        assert_eq!(fx.current_link(), None, "{case}");
        let staging = fx.product_dir().join(".staging/new");
        assert_eq!(fs::read_dir(&staging).expect("staging").count(), 0, "{case}: staging left");
    }
}

#[tokio::test]
async fn symlinks_that_stay_inside_are_kept() {
    let fx = Fixture::new();
    let items = [
        file("lib/real.txt", "real"),
        Item::Symlink("lib/alias.txt", "real.txt"),
        Item::Symlink("bin/tool", "../lib/real.txt"),
        Item::Symlink("dangling", "not-there"),
        Item::HardLink("hard.txt", "lib/real.txt"),
    ];
    fx.install_files("1.0.0", &items).await.expect("inside links are fine");
    assert_eq!(fx.current_file("lib/alias.txt"), "real");
    assert_eq!(fx.current_file("bin/tool"), "real");
    assert_eq!(fx.current_file("hard.txt"), "real");
}

#[tokio::test]
async fn size_and_entry_caps_refuse_the_archive() {
    let fx = Fixture::new();
    let big = fx.archive(
        "big.tar.gz",
        &[Item::File("a.bin", vec![0; 600]), Item::File("b.bin", vec![0; 600])],
        Compression::Gzip,
    );
    let limits = UnpackLimits { max_unpacked_bytes: 1000, max_entries: 100 };
    let failure =
        unpack_version_with_limits(&fx.products, PRODUCT, "1.0.0", &big, limits).await.expect_err("over the byte cap");
    assert_eq!(failure.phase, Phase::Unpack);
    assert!(failure.reason.contains("more than 1000 bytes"), "{}", failure.reason);
    assert!(fx.versions().is_empty());

    let many = fx.archive("many.tar", &[file("a", "a"), file("b", "b"), file("c", "c")], Compression::None);
    let limits = UnpackLimits { max_unpacked_bytes: 1000, max_entries: 2 };
    let failure = unpack_version_with_limits(&fx.products, PRODUCT, "1.0.0", &many, limits)
        .await
        .expect_err("over the entry cap");
    assert!(failure.reason.contains("more than 2 entries"), "{}", failure.reason);
    assert!(fx.versions().is_empty());

    // Within both caps the same archives unpack.
    let limits = UnpackLimits { max_unpacked_bytes: 1200, max_entries: 3 };
    let dir = unpack_version_with_limits(&fx.products, PRODUCT, "1.0.0", &big, limits).await.expect("within the caps");
    assert_eq!(fs::read(dir.join("b.bin")).expect("b.bin").len(), 600);
}

#[tokio::test]
async fn reinstalling_an_unpacked_version_replaces_it() {
    let fx = Fixture::new();
    fx.install_files("1.0.0", &[file("data.txt", "one")]).await.expect("install 1.0.0");
    fx.install_files("2.0.0", &[file("data.txt", "bad"), file("stale.txt", "old"), health(1)])
        .await
        .expect_err("first 2.0.0 is unhealthy");
    assert_eq!(current_version(&fx.products, PRODUCT).as_deref(), Some("1.0.0"));
    assert_eq!(fx.versions(), ["1.0.0", "2.0.0"], "the failed version is kept until replaced");

    // The retry ships a fixed package under the same version.
    fx.install_files("2.0.0", &[file("data.txt", "good"), health(0)]).await.expect("retry");
    assert_eq!(fx.current_link(), Some(PathBuf::from("versions/2.0.0")));
    assert_eq!(fx.current_file("data.txt"), "good");
    assert!(!fx.product_dir().join("current/stale.txt").exists(), "old tree was not replaced");
}

#[tokio::test]
async fn the_current_version_is_never_replaced() {
    let fx = Fixture::new();
    fx.install_files("1.0.0", &[file("data.txt", "one")]).await.expect("install 1.0.0");
    let archive = fx.archive("again.tar", &[file("data.txt", "other")], Compression::None);
    let failure = unpack_version(&fx.products, PRODUCT, "1.0.0", &archive).await.expect_err("1.0.0 is current");
    assert_eq!(failure.phase, Phase::Unpack);
    assert!(failure.reason.contains("current"), "{}", failure.reason);
    assert_eq!(fx.current_file("data.txt"), "one");
}

#[tokio::test]
async fn switch_current_and_prune_versions_work_directly() {
    let fx = Fixture::new();
    for version in ["1.0.0", "2.0.0", "3.0.0"] {
        let archive = fx.archive("p.tar", &[file("v.txt", version)], Compression::None);
        unpack_version(&fx.products, PRODUCT, version, &archive).await.expect("unpack");
    }
    assert_eq!(fx.current_link(), None, "unpacking does not switch");
    switch_current(&fx.products, PRODUCT, Some("2.0.0")).expect("switch");
    assert_eq!(fx.current_file("v.txt"), "2.0.0");
    let missing = switch_current(&fx.products, PRODUCT, Some("9.9.9")).expect_err("no such version");
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(fx.current_file("v.txt"), "2.0.0", "a failed switch changes nothing");

    // `current` (2.0.0) survives even when not listed.
    prune_versions(&fx.products, PRODUCT, &["3.0.0"]).expect("prune");
    assert_eq!(fx.versions(), ["2.0.0", "3.0.0"]);

    switch_current(&fx.products, PRODUCT, None).expect("remove current");
    assert_eq!(current_version(&fx.products, PRODUCT), None);
    switch_current(&fx.products, PRODUCT, None).expect("removing twice is fine");
}

#[tokio::test]
async fn script_module_runs_install_and_health_with_the_rollgate_environment() {
    let fx = Fixture::new();
    let items = [
        Item::Script(
            "install",
            r#"env | grep -E '^(ROLLGATE_|EXTRA_)' | sort > "$OUT/install.env"; pwd -P > "$OUT/install.cwd""#,
        ),
        Item::Script("health", r#"echo "$ROLLGATE_VERSION" > "$OUT/health.ran""#),
        Item::Script("rollback", r#"touch "$OUT/rollback.ran""#),
    ];
    let installed = fx.install_script("2.0.0", Some("1.0.0"), &items).await.expect("install");
    let dir = fx.product_dir().join("versions/2.0.0");
    assert_eq!(installed.version_dir, dir);
    assert_eq!(installed.previous_version.as_deref(), Some("1.0.0"));
    let expected = format!(
        "EXTRA_SETTING=yes\nROLLGATE_FROM_VERSION=1.0.0\nROLLGATE_PRODUCT=app\n\
         ROLLGATE_VERSION=2.0.0\nROLLGATE_VERSION_DIR={}\n",
        dir.display()
    );
    assert_eq!(fx.out_file("install.env"), expected);
    assert_eq!(fx.out_file("install.cwd").trim(), dir.display().to_string());
    assert_eq!(fx.out_file("health.ran"), "2.0.0\n");
    assert!(!fx.out.join("rollback.ran").exists(), "rollback ran after a success");
    assert_eq!(fx.current_link(), None, "the script module leaves `current` to the script");
}

#[tokio::test]
async fn script_install_failure_runs_rollback_and_checks_the_previous_version() {
    let fx = Fixture::new();
    let v1 = [
        Item::Script("install", "true"),
        Item::Script("health", r#"echo "$ROLLGATE_VERSION from $ROLLGATE_FROM_VERSION" >> "$OUT/health.log""#),
    ];
    fx.install_script("1.0.0", None, &v1).await.expect("install 1.0.0");

    let v2 = [
        Item::Script("install", "echo 'disk full' >&2; exit 4"),
        Item::Script("health", r#"echo "$ROLLGATE_VERSION" >> "$OUT/health.log""#),
        Item::Script("rollback", r#"echo "$ROLLGATE_VERSION to $ROLLGATE_FROM_VERSION" > "$OUT/rollback.ran""#),
    ];
    let failure = fx.install_script("2.0.0", Some("1.0.0"), &v2).await.expect_err("install fails");
    assert_eq!(failure.phase, Phase::Install);
    assert!(failure.reverted);
    assert_eq!(failure.previous_healthy, Some(true));
    assert_eq!(failure.previous_version.as_deref(), Some("1.0.0"));
    assert!(failure.reason.contains("exited with status 4"), "{}", failure.reason);
    assert!(failure.reason.contains("disk full"), "{}", failure.reason);
    assert_eq!(fx.out_file("rollback.ran"), "2.0.0 to 1.0.0\n");
    // 2.0.0's health never ran; 1.0.0's ran at its install and again after the rollback.
    assert_eq!(fx.out_file("health.log"), "1.0.0 from \n1.0.0 from 2.0.0\n");
}

#[tokio::test]
async fn script_rollback_failure_is_reported_with_the_health_failure() {
    let fx = Fixture::new();
    let items = [
        Item::Script("install", "true"),
        Item::Script("health", "echo 'port 8080 closed' >&2; exit 1"),
        Item::Script("rollback", "echo 'backup missing' >&2; exit 2"),
    ];
    let failure = fx.install_script("2.0.0", Some("1.0.0"), &items).await.expect_err("fails");
    assert_eq!(failure.phase, Phase::Rollback);
    assert!(!failure.reverted);
    assert_eq!(failure.previous_healthy, None);
    assert!(failure.reason.contains("backup missing"), "{}", failure.reason);
    assert!(failure.reason.contains("port 8080 closed"), "{}", failure.reason);
    assert!(failure.reason.contains("after health failed"), "{}", failure.reason);
}

#[tokio::test]
async fn script_without_rollback_reports_that_nothing_was_reverted() {
    let fx = Fixture::new();
    let items = [Item::Script("install", "exit 1")];
    let failure = fx.install_script("2.0.0", Some("1.0.0"), &items).await.expect_err("fails");
    assert_eq!(failure.phase, Phase::Install);
    assert!(!failure.reverted);
    assert!(failure.reason.contains("no `rollback`"), "{}", failure.reason);
}

#[tokio::test]
async fn script_package_without_install_is_a_clear_error() {
    let fx = Fixture::new();
    let items = [Item::Script("health", r#"touch "$OUT/health.ran""#), file("data.txt", "x")];
    let failure = fx.install_script("1.0.0", None, &items).await.expect_err("no install");
    assert_eq!(failure.phase, Phase::Install);
    assert!(!failure.reverted, "nothing ran, so nothing changed");
    assert!(failure.reason.contains("no `install` program"), "{}", failure.reason);
    assert!(!fx.out.join("health.ran").exists());

    // Present but not executable is refused too, rather than skipped.
    let items = [file("install", "#!/bin/sh\ntrue\n")];
    let failure = fx.install_script("1.0.1", None, &items).await.expect_err("not executable");
    assert_eq!(failure.phase, Phase::Install);
    assert!(failure.reason.contains("not executable"), "{}", failure.reason);
}

#[tokio::test]
async fn a_failing_programs_output_is_bounded_to_its_tail() {
    let fx = Fixture::new();
    let noisy = Item::Script(
        "rollgate-health",
        "i=0; while [ $i -lt 3000 ]; do echo \"line $i of noise\"; i=$((i+1)); done; echo LAST >&2; exit 1",
    );
    let failure = fx.install_files("1.0.0", &[noisy]).await.expect_err("unhealthy");
    assert!(failure.reason.contains("LAST"), "{}", failure.reason);
    assert!(!failure.reason.contains("line 0 of noise"), "the head should have been dropped");
    assert!(failure.reason.len() < OUTPUT_TAIL_BYTES + 512, "reason is {} bytes", failure.reason.len());
}
