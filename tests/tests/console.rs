//! `gantry console` against gantry-local and real agents: what it shows, and that a
//! request it did not serve itself (another site, another local user, a rebinding DNS
//! name) changes nothing.

use gantry_tests::console::Console;
use gantry_tests::fleet::Fleet;
use serde_json::Value;
use std::time::{Duration, Instant};

/// A BeforeInstall hook that waits (at most a minute) for `go` in the host's run
/// directory: the test holds the deployment running and lets it go.
const GATE: &str =
    r#"for i in $(seq 600); do [ -e "$E2E_RUN_DIR/go" ] && exit 0; sleep 0.1; done; exit 1"#;

fn let_go(fleet: &Fleet, host: &str) {
    std::fs::write(fleet.host(host).run_dir().join("go"), "").unwrap();
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(fleet: &Fleet, id: &str) -> Value {
    fleet.deployment(id)["status"].clone()
}

/// A request the console must refuse: what it is, its headers and form, and what the
/// refusal names.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, &'a str);

#[test]
fn the_console_shows_a_running_deployment_and_refuses_changes_it_did_not_serve() {
    let fleet = Fleet::shop(&["web-1"], "CodeDeployDefault.OneAtATime");
    fleet.push("shop", "v1", &[("BeforeInstall", GATE)], 60);
    let created = fleet.gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
    let id = created["deploymentId"]
        .as_str()
        .expect("a deployment id")
        .to_owned();
    let console = Console::start(&fleet).expect("gantry console starts");
    let port = console.base.rsplit(':').next().unwrap().to_owned();
    let own_host = format!("127.0.0.1:{port}");
    let cookie = console.cookie();
    let stop = format!("/deployments/{id}/stop");
    let form = format!("token={}&rollback=true", console.token);

    // Reading needs the session: the printed URL's login sets it.
    let login = console.send("GET", "/login?token=wrong", &[], "").unwrap();
    assert_eq!(login.status, 403, "{login:?}");
    let page = console.send("GET", "/", &[], "").unwrap();
    assert_eq!(page.status, 403);
    assert!(page.body.contains("no session cookie"), "{}", page.body);
    let login = console
        .send("GET", &format!("/login?token={}", console.token), &[], "")
        .unwrap();
    assert_eq!(login.status, 303);
    let set = login.header("set-cookie").expect("a cookie");
    assert!(
        set.starts_with(&cookie) && set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );

    // The pages, with the session.
    let home = console.page("/").unwrap();
    assert_eq!(home.status, 200);
    assert!(
        home.body.contains(r#"href="/applications/shop""#),
        "{}",
        home.body
    );
    let csp = home.header("content-security-policy").expect("a policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let app = console.page("/applications/shop").unwrap();
    assert!(
        app.body.contains("web") && app.body.contains("s3://gantry-revisions/shop/v1.tgz"),
        "{}",
        app.body
    );
    let listed = console.page("/deployments?status=InProgress").unwrap();
    assert!(listed.body.contains(&id), "{}", listed.body);
    let none = console.page("/deployments?status=Failed").unwrap();
    assert!(!none.body.contains(&id));
    let instances = console.page("/instances").unwrap();
    assert!(
        instances.body.contains("web-1") && instances.body.contains("role=web"),
        "{}",
        instances.body
    );
    wait_for(
        "web-1 in BeforeInstall on the page",
        Duration::from_secs(30),
        || {
            let page = console.page(&format!("/deployments/{id}")).unwrap();
            page.body.contains(r#"id="host-web-1""#)
                && page.body.contains("BeforeInstall InProgress")
        },
    );
    let page = console.page(&format!("/deployments/{id}")).unwrap();
    assert!(page.body.contains("Stop and roll back") && page.body.contains(&console.token));

    // Changes it did not serve: each refused, naming what was missing.
    let refusals: [Refusal; 6] = [
        (
            "no form token",
            vec![("Cookie", &cookie)],
            "rollback=true".into(),
            "no token",
        ),
        (
            "a wrong form token",
            vec![("Cookie", &cookie)],
            format!("token={}&rollback=true", "0".repeat(64)),
            "not this console",
        ),
        (
            "no cookie (another local user)",
            vec![],
            form.clone(),
            "no session cookie",
        ),
        (
            "another site's page",
            vec![("Cookie", &cookie), ("Origin", "http://evil.example")],
            form.clone(),
            "Origin",
        ),
        (
            "a cross-site fetch",
            vec![("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
            form.clone(),
            "Sec-Fetch-Site",
        ),
        (
            "a rebinding DNS name",
            vec![("Cookie", &cookie), ("Host", "evil.example")],
            form.clone(),
            "is not this console",
        ),
    ];
    for (what, mut headers, body, said) in refusals {
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        let answer = console.send("POST", &stop, &headers, &body).unwrap();
        assert_eq!(answer.status, 403, "{what}: {answer:?}");
        assert!(answer.body.contains(said), "{what}: {}", answer.body);
    }
    assert_eq!(status(&fleet, &id), "InProgress", "nothing was stopped");

    // The console's own form: stopped, and the page to look at next.
    let answer = console
        .send(
            "POST",
            &stop,
            &[
                ("Cookie", &cookie),
                ("Host", &own_host),
                ("Origin", &console.base),
                ("Sec-Fetch-Site", "same-origin"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &format!("token={}", console.token),
        )
        .unwrap();
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(
        answer.header("location"),
        Some(format!("/deployments/{id}").as_str())
    );
    let_go(&fleet, "web-1");
    let ended = fleet.wait_for_end(&id, Duration::from_secs(60));
    assert_eq!(ended["status"], "Stopped", "{ended:#}");
}

/// The console in a real headless Chromium: a 4-host deployment whose hosts move
/// through their events on the page without a reload, one host's failing
/// ValidateService with its script's output, and "Stop and roll back" pressed on the
/// page. Screenshots of both moments are saved (`make screenshots`: the README's).
#[test]
fn a_deployment_moves_live_in_chromium_and_stops_with_a_rollback_from_its_page() {
    use gantry_tests::browser::Browser;
    let hosts = ["web-1", "web-2", "web-3", "web-4"];
    let fleet = Fleet::shop(&hosts, "CodeDeployDefault.AllAtOnce");
    fleet.push("shop", "v1", &[], 60);
    fleet.gantry_ok(&["deploy", "--app", "shop", "--group", "web"]);
    // v2: web-1 fails its health check at once; the others wait at BeforeInstall.
    fleet.push(
        "shop",
        "v2",
        &[
            ("BeforeInstall", &format!(r#"[ "$E2E_HOST" = web-1 ] || {{ {GATE}; }}"#)),
            (
                "ValidateService",
                r#"if [ "$E2E_HOST" = web-1 ]; then echo "GET /health on $E2E_HOST: 503 Service Unavailable" >&2; exit 1; fi"#,
            ),
        ],
        60,
    );
    let console = Console::start(&fleet).expect("gantry console starts");
    let browser = Browser::start(1280, 900).expect("chromium starts");
    browser.goto(&console.login_url()).unwrap();
    let created = fleet.gantry_json(&["deploy", "--app", "shop", "--group", "web", "--no-wait"]);
    let id = created["deploymentId"]
        .as_str()
        .expect("a deployment id")
        .to_owned();
    browser
        .goto(&format!("{}/deployments/{id}", console.base))
        .unwrap();
    // A mark on this page's window: a reload would lose it.
    browser
        .script("window.gantryMark = 'no reload'; return true")
        .unwrap();
    browser
        .wait_until(
            "web-1 to fail with its script's output, live",
            r#"const row = document.getElementById('host-web-1');
               return !!row && row.dataset.status === 'Failed'
                 && !!row.querySelector('pre.log')?.textContent.includes('GET /health on web-1: 503 Service Unavailable')
                 && !!row.querySelector('li[data-event="ValidateService"]')?.textContent.includes('Failed');"#,
            Duration::from_secs(60),
        )
        .unwrap();
    browser
        .wait_until(
            "the other hosts held in BeforeInstall",
            r#"return ['web-2', 'web-3', 'web-4'].every(host => {
                 const row = document.getElementById('host-' + host);
                 return row?.querySelector('td.now')?.textContent.trim() === 'BeforeInstall InProgress';
               }) && document.getElementById('progress-text').textContent.includes('1 of 4 hosts done (1 failed)');"#,
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(
        browser.script("return window.gantryMark").unwrap(),
        "no reload"
    );
    // `make screenshots` saves them over the README's; otherwise they are the run's own.
    let images = std::env::var_os("GANTRY_SCREENSHOTS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fleet.work.path().join("screenshots"));
    browser
        .screenshot(&images.join("console-deployment-live.png"))
        .unwrap();

    browser
        .script(
            r#"const button = [...document.querySelectorAll('#actions button')]
                 .find(button => button.textContent === 'Stop and roll back');
               button.click(); return true;"#,
        )
        .unwrap();
    for host in &hosts[1..] {
        let_go(&fleet, host);
    }
    browser
        .wait_until(
            "the deployment stopped, with a link to its rollback",
            r#"const link = document.getElementById('rollback');
               return !!document.querySelector('#summary .headline')?.textContent.includes('Stopped') && !!link;"#,
            Duration::from_secs(90),
        )
        .unwrap();
    // The page follows the stopped deployment until its hosts end the event they were in.
    browser
        .wait_until(
            "the other hosts to end the event they were in, on the page",
            r#"return [...document.querySelectorAll('#hosts tbody tr')]
                 .every(row => row.dataset.status !== 'InProgress');"#,
            Duration::from_secs(60),
        )
        .unwrap();
    browser
        .wait_until(
            "the page to say the deployment is over",
            "return document.getElementById('live')?.textContent === 'The deployment is over.'",
            Duration::from_secs(60),
        )
        .unwrap();
    let rollback = browser
        .script("return document.getElementById('rollback').textContent")
        .unwrap();
    let rollback = rollback.as_str().expect("a rollback id").to_owned();
    browser
        .screenshot(&images.join("console-deployment-stopped.png"))
        .unwrap();
    let stopped = fleet.deployment(&id);
    assert_eq!(stopped["status"], "Stopped", "{stopped:#}");
    assert_eq!(
        stopped["rollbackInfo"]["rollbackDeploymentId"],
        rollback.as_str()
    );
    let rolled_back = fleet.wait_for_end(&rollback, Duration::from_secs(90));
    assert_eq!(rolled_back["status"], "Succeeded", "{rolled_back:#}");
}
