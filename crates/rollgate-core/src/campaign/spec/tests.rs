//! Tests of campaign files: a realistic three-ring campaign, then one broken field at a time.

use expect_test::{expect, Expect};

use super::*;

/// A realistic campaign: a small pilot, an extended pilot across sites, then production with
/// global autofix.
const THREE_STEPS: &str = r#"
name = "monthly-workstations"
time_zone = "Europe/Berlin"
patch_tuesday_offset_days = 1
start_time = "18:00"
products = ["firefox", "openssl", "rollgate-agent", "firefox"]
severities = ["Critical", "high"]
first_month_lookback_days = 30

[[steps]]
name = "pilot"
targets = "ring=pilot"
max_in_flight = 20
soak = "1d"
progression = "auto"
window = "daily 18:00-23:00"
[steps.acceptance]
min_sample = 20
min_success_rate = 0.95
min_good_patch_ratio = 0.98
max_error_rate = 0.03
[steps.notify]
emails = ["patching@example.com"]
webhooks = ["https://chat.example.com/hooks/patching"]

[[steps]]
name = "extended-pilot"
targets = "ring=extended"
max_in_flight = 200
soak = "2d12h"
progression = "manual"
window = "Mon-Fri 18:00-23:00 Europe/Berlin"
[steps.acceptance]
min_sample = 500
min_success_rate = 0.97
max_error_rate = 0.02
[steps.notify]
emails = ["patching@example.com", "change-board@example.com"]

[[steps]]
name = "production"
targets = "all"
max_in_flight = 2000
soak = 14400
progression = "auto"
global_autofix = true
[steps.acceptance]
min_sample = 5000
min_success_rate = 0.98
min_good_patch_ratio = 0.99
[steps.notify]
webhooks = ["http://127.0.0.1:9000/hook", "https://chat.example.com/hooks/patching"]
"#;

fn describe(c: &ValidCampaign) -> String {
    let list = |items: Vec<String>| if items.is_empty() { "all".to_owned() } else { items.join(",") };
    let mut out = format!(
        "campaign {} in {}: Patch Tuesday {:+} days at {}; products {}; severities {}; lookback {} days\n",
        c.name(),
        c.time_zone_name(),
        c.patch_tuesday_offset_days(),
        c.start_time().strftime("%H:%M"),
        list(c.products().to_vec()),
        list(c.severities().iter().map(|s| s.to_string()).collect()),
        c.first_month_lookback_days(),
    );
    for (i, s) in c.steps().iter().enumerate() {
        let a = s.acceptance();
        out.push_str(&format!(
            "  {i} {}: targets {}, max in flight {}, soak {} s, {}, window {}, autofix {}\n",
            s.name(),
            s.targets(),
            s.max_in_flight(),
            s.soak_secs(),
            s.progression(),
            s.window().map_or("any time".to_owned(), |w| w.spec()),
            s.global_autofix(),
        ));
        out.push_str(&format!(
            "    gate: sample >= {}, success >= {}, good-patch >= {:?}, errors <= {:?}\n",
            a.min_sample, a.min_success_rate, a.min_good_patch_ratio, a.max_error_rate
        ));
        out.push_str(&format!("    notify: {:?} {:?}\n", s.notify().emails, s.notify().webhooks));
    }
    out
}

/// Parses and validates `toml`, printing the campaign or one problem per line.
fn check(toml: &str, expect: Expect) {
    let got = match toml::from_str::<CampaignSpec>(toml) {
        Err(err) => format!("toml: {}", err.message()),
        Ok(spec) => match spec.validate() {
            Ok(campaign) => describe(&campaign),
            Err(err) => err.problems.iter().map(|p| format!("{p}\n")).collect(),
        },
    };
    expect.assert_eq(&got);
}

/// The three-step campaign with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> String {
    assert!(THREE_STEPS.contains(from), "{from}");
    THREE_STEPS.replacen(from, to, 1)
}

#[test]
fn a_realistic_three_step_campaign() {
    check(
        THREE_STEPS,
        expect![[r#"
            campaign monthly-workstations in Europe/Berlin: Patch Tuesday +1 days at 18:00; products firefox,openssl,rollgate-agent; severities critical,high; lookback 30 days
              0 pilot: targets ring=pilot, max in flight 20, soak 86400 s, auto, window daily 18:00-23:00 Europe/Berlin, autofix false
                gate: sample >= 20, success >= 0.95, good-patch >= Some(0.98), errors <= Some(0.03)
                notify: ["patching@example.com"] ["https://chat.example.com/hooks/patching"]
              1 extended-pilot: targets ring=extended, max in flight 200, soak 216000 s, manual, window Mon-Fri 18:00-23:00 Europe/Berlin, autofix false
                gate: sample >= 500, success >= 0.97, good-patch >= None, errors <= Some(0.02)
                notify: ["change-board@example.com", "patching@example.com"] []
              2 production: targets all, max in flight 2000, soak 14400 s, auto, window any time, autofix true
                gate: sample >= 5000, success >= 0.98, good-patch >= Some(0.99), errors <= None
                notify: [] ["http://127.0.0.1:9000/hook", "https://chat.example.com/hooks/patching"]
        "#]],
    );
}

#[test]
fn filters_select_products_and_severities() {
    let campaign = toml::from_str::<CampaignSpec>(THREE_STEPS).unwrap().validate().unwrap();
    assert!(campaign.includes_product("openssl"));
    assert!(!campaign.includes_product("openssh"));
    assert!(campaign.includes_severity(Severity::High));
    assert!(!campaign.includes_severity(Severity::Low));
    let all = edited("products = [\"firefox\", \"openssl\", \"rollgate-agent\", \"firefox\"]", "products = []")
        .replacen("severities = [\"Critical\", \"high\"]\n", "", 1);
    let campaign = toml::from_str::<CampaignSpec>(&all).unwrap().validate().unwrap();
    assert!(campaign.includes_severity(Severity::Low));
    assert!(campaign.includes_product("openssh"));
    assert_eq!(Severity::of_rating("Important"), Some(Severity::High));
    assert_eq!(Severity::of_rating("moderate"), Some(Severity::Medium));
    assert_eq!(Severity::of_rating("none"), None);
}

#[test]
fn negative_offsets_and_a_zone_in_other_spelling() {
    check(
        &edited("patch_tuesday_offset_days = 1", "patch_tuesday_offset_days = -6")
            .replace("time_zone = \"Europe/Berlin\"", "time_zone = \"america/new_york\""),
        expect![[r#"
            campaign monthly-workstations in America/New_York: Patch Tuesday -6 days at 18:00; products firefox,openssl,rollgate-agent; severities critical,high; lookback 30 days
              0 pilot: targets ring=pilot, max in flight 20, soak 86400 s, auto, window daily 18:00-23:00 America/New_York, autofix false
                gate: sample >= 20, success >= 0.95, good-patch >= Some(0.98), errors <= Some(0.03)
                notify: ["patching@example.com"] ["https://chat.example.com/hooks/patching"]
              1 extended-pilot: targets ring=extended, max in flight 200, soak 216000 s, manual, window Mon-Fri 18:00-23:00 Europe/Berlin, autofix false
                gate: sample >= 500, success >= 0.97, good-patch >= None, errors <= Some(0.02)
                notify: ["change-board@example.com", "patching@example.com"] []
              2 production: targets all, max in flight 2000, soak 14400 s, auto, window any time, autofix true
                gate: sample >= 5000, success >= 0.98, good-patch >= Some(0.99), errors <= None
                notify: [] ["http://127.0.0.1:9000/hook", "https://chat.example.com/hooks/patching"]
        "#]],
    );
}

/// One broken field per case; each message names the field as the file spells it.
#[test]
fn each_bad_field_is_named() {
    let cases: &[(&str, &str)] = &[
        ("name = \"monthly-workstations\"", "name = \"monthly workstations\""),
        ("time_zone = \"Europe/Berlin\"", "time_zone = \"Mars/Olympus\""),
        ("patch_tuesday_offset_days = 1", "patch_tuesday_offset_days = 40"),
        ("patch_tuesday_offset_days = 1", "patch_tuesday_offset_days = -28"),
        ("start_time = \"18:00\"", "start_time = \"24:00\""),
        ("start_time = \"18:00\"", "start_time = \"9:30\""),
        ("\"openssl\", \"rollgate-agent\"", "\"openssl\", \"../etc\""),
        ("severities = [\"Critical\", \"high\"]", "severities = [\"critical\", \"urgent\"]"),
        ("first_month_lookback_days = 30", "first_month_lookback_days = -1"),
        ("first_month_lookback_days = 30", "first_month_lookback_days = 400"),
        ("name = \"extended-pilot\"", "name = \"pilot\""),
        ("targets = \"ring=pilot\"", "targets = \"ring=pilot,ep-1\""),
        ("max_in_flight = 20", "max_in_flight = 0"),
        ("max_in_flight = 200", "max_in_flight = 100001"),
        ("soak = \"1d\"", "soak = \"2x\""),
        ("soak = \"1d\"", "soak = \"30m1h\""),
        ("soak = \"1d\"", "soak = -5"),
        ("soak = \"1d\"", "soak = \"31d\""),
        ("min_sample = 20", "min_sample = 0"),
        ("min_success_rate = 0.97", "min_success_rate = 1.5"),
        ("min_good_patch_ratio = 0.98", "min_good_patch_ratio = -0.1"),
        ("max_error_rate = 0.03", "max_error_rate = nan"),
        ("progression = \"manual\"", "progression = \"sometimes\""),
        ("window = \"daily 18:00-23:00\"", "window = \"Mox 18:00-23:00\""),
        ("emails = [\"patching@example.com\"]", "emails = [\"patching at example.com\"]"),
        ("webhooks = [\"https://chat.example.com/hooks/patching\"]", "webhooks = [\"http://chat.example.com/x\"]"),
        ("webhooks = [\"https://chat.example.com/hooks/patching\"]", "webhooks = [\"https://user:pw@example.com/\"]"),
        ("webhooks = [\"https://chat.example.com/hooks/patching\"]", "webhooks = [\"http://127.example.com/\"]"),
        ("webhooks = [\"https://chat.example.com/hooks/patching\"]", "webhooks = [\"ftp://example.com/\"]"),
        ("progression = \"auto\"\nwindow", "progression = \"auto\"\nglobal_autofix = true\nwindow"),
    ];
    let mut out = String::new();
    for (from, to) in cases {
        let spec: CampaignSpec = toml::from_str(&edited(from, to)).unwrap();
        let problems = spec.validate().unwrap_err().problems;
        for p in problems {
            out.push_str(&format!("{p}\n"));
        }
    }
    expect![[r#"
        name is invalid: bad campaign name `monthly workstations`: use 1 to 64 letters, digits, `-`, `_`, `.`, starting with a letter or digit
        time_zone `Mars/Olympus` is not an IANA time zone name such as `Europe/Berlin` or `UTC`
        patch_tuesday_offset_days must be between -27 and 27 (got 40)
        patch_tuesday_offset_days must be between -27 and 27 (got -28)
        start_time must be HH:MM from 00:00 to 23:59 (got `24:00`)
        start_time must be HH:MM from 00:00 to 23:59 (got `9:30`)
        products[2] is invalid: bad product name `../etc`: use 1 to 64 letters, digits, `-`, `_`, `.`, starting with a letter or digit
        severities[1] must be critical, high, medium or low (got `urgent`)
        first_month_lookback_days must be between 0 and 366 (got -1)
        first_month_lookback_days must be between 0 and 366 (got 400)
        steps[1].name `pilot` is already used by steps[0]
        steps[0].targets is not a valid selector: target selector mixes endpoint ids and label matches (`ring=pilot,ep-1`): use one kind
        steps[0].max_in_flight must be between 1 and 100000 (got 0)
        steps[1].max_in_flight must be between 1 and 100000 (got 100001)
        steps[0].soak `2x` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`
        steps[0].soak `30m1h` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`
        steps[0].soak must not be negative (got -5)
        steps[0].soak must be at most 30 days (2592000 s), got 2678400 s
        steps[0].acceptance.min_sample must be between 1 and 1000000 (got 0)
        steps[1].acceptance.min_success_rate must be between 0 and 1 (got 1.5)
        steps[0].acceptance.min_good_patch_ratio must be between 0 and 1 (got -0.1)
        steps[0].acceptance.max_error_rate must be between 0 and 1 (got NaN)
        steps[1].progression must be `auto` or `manual` (got `sometimes`)
        steps[0].window is not a valid maintenance window: unknown day `Mox`: expected Mon, Tue, Wed, Thu, Fri, Sat, Sun
        steps[0].notify.emails[0] `patching at example.com` is not an email address like `ops@example.com`
        steps[0].notify.webhooks[0] `http://chat.example.com/x` must use https:// (plain http:// is allowed only to a loopback host)
        steps[0].notify.webhooks[0] `https://user:pw@example.com/` must not hold credentials; put a secret in the URL path or a header instead
        steps[0].notify.webhooks[0] `http://127.example.com/` must use https:// (plain http:// is allowed only to a loopback host)
        steps[0].notify.webhooks[0] `ftp://example.com/` must be an https:// URL
        steps[0].global_autofix is only allowed on the last step
    "#]]
    .assert_eq(&out);
}

#[test]
fn all_problems_are_reported_together() {
    let broken = edited("min_success_rate = 0.97", "min_success_rate = 1.5")
        .replace("start_time = \"18:00\"", "start_time = \"late\"")
        .replace("max_in_flight = 2000", "max_in_flight = -3");
    let err = toml::from_str::<CampaignSpec>(&broken).unwrap().validate().unwrap_err();
    expect![[r#"invalid campaign: start_time must be HH:MM from 00:00 to 23:59 (got `late`); steps[1].acceptance.min_success_rate must be between 0 and 1 (got 1.5); steps[2].max_in_flight must be between 1 and 100000 (got -3)"#]]
    .assert_eq(&err.to_string());
}

#[test]
fn steps_must_exist_and_are_bounded() {
    let head = THREE_STEPS.split("[[steps]]").next().unwrap();
    check(&format!("{head}steps = []\n"), expect!["steps must hold at least one step\n"]);
    let step = format!("[[steps]]{}", THREE_STEPS.split("[[steps]]").nth(3).unwrap());
    let many: String = (0..17).map(|i| step.replace("name = \"production\"", &format!("name = \"p{i}\""))).collect();
    check(&format!("{head}{many}"), expect!["steps holds 17 steps, more than the limit of 16\n"]);
}

/// Shape errors come from the TOML deserializer, which names the key too.
#[test]
fn shape_errors_come_from_toml() {
    check(
        &edited("max_in_flight = 20", "max_in_flight = 20\nmax_inflight = 3"),
        expect!["toml: unknown field `max_inflight`, expected one of `name`, `targets`, `max_in_flight`, `soak`, `acceptance`, `progression`, `notify`, `window`, `global_autofix`, `max_attempts`, `retry_backoff`"],
    );
    check(&edited("first_month_lookback_days = 30\n", ""), expect!["toml: missing field `first_month_lookback_days`"]);
    check(
        &edited("soak = \"1d\"", "soak = 1.5"),
        expect![[
            r#"toml: invalid type: floating point `1.5`, expected whole seconds or a duration such as "2h", "30m" or "45s""#
        ]],
    );
    check(
        &edited("soak = \"1d\"", "soak = true"),
        expect![[
            r#"toml: invalid type: boolean `true`, expected whole seconds or a duration such as "2h", "30m" or "45s""#
        ]],
    );
    check(
        &edited("min_sample = 20", "min_sample = \"twenty\""),
        expect!["toml: invalid type: string \"twenty\", expected i64"],
    );
}

#[test]
fn durations() {
    let cases = [
        "45s",
        "30m",
        "2h",
        "1d",
        "1h30m",
        "2d12h",
        "1d2h3m4s",
        "0s",
        " 90s ",
        "",
        "90",
        "h",
        "1h1h",
        "1s1m",
        "1.5h",
        "9999999999s",
        "-1h",
        "1H",
    ];
    let out: String = cases.iter().map(|c| format!("{c:?} -> {:?}\n", parse_duration_secs(c))).collect();
    expect![[r#"
        "45s" -> Ok(45)
        "30m" -> Ok(1800)
        "2h" -> Ok(7200)
        "1d" -> Ok(86400)
        "1h30m" -> Ok(5400)
        "2d12h" -> Ok(216000)
        "1d2h3m4s" -> Ok(93784)
        "0s" -> Ok(0)
        " 90s " -> Ok(90)
        "" -> Err("`` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "90" -> Err("`90` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "h" -> Err("`h` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "1h1h" -> Err("`1h1h` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "1s1m" -> Err("`1s1m` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "1.5h" -> Err("`1.5h` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "9999999999s" -> Err("`9999999999s` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "-1h" -> Err("`-1h` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
        "1H" -> Err("`1H` is not a duration: expected seconds or text like `2h`, `30m`, `45s` or `1h30m`")
    "#]]
    .assert_eq(&out);
}

#[test]
fn retries_default_and_are_bounded() {
    let base = "name = \"c\"\ntime_zone = \"UTC\"\npatch_tuesday_offset_days = 0\nstart_time = \"09:00\"\nfirst_month_lookback_days = 0\n[[steps]]\nname = \"s\"\ntargets = \"all\"\nmax_in_flight = 1\nsoak = \"1h\"\nprogression = \"auto\"\n[steps.acceptance]\nmin_sample = 1\nmin_success_rate = 0.9\n";
    let parse = |extra: &str| {
        toml::from_str::<CampaignSpec>(
            &base.replace("progression = \"auto\"\n", &format!("progression = \"auto\"\n{extra}")),
        )
        .unwrap()
        .validate()
    };
    let step = parse("").unwrap().steps()[0].clone();
    assert_eq!((step.max_attempts(), step.retry_backoff_secs()), (3, 30));
    let step = parse("max_attempts = 1\nretry_backoff = \"2m\"\n").unwrap().steps()[0].clone();
    assert_eq!((step.max_attempts(), step.retry_backoff_secs()), (1, 120));
    let problems = parse("max_attempts = 11\nretry_backoff = 0\n").unwrap_err().to_string();
    assert!(problems.contains("steps[0].max_attempts must be between 1 and 10 (got 11)"), "{problems}");
    assert!(problems.contains("steps[0].retry_backoff must be between 1 s and a day"), "{problems}");
}
