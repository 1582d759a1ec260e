//! `diff`: what changes between two configs, and the plan of each changed
//! service (deploy, scale, or in place), on configs parsed from text.

use super::ok;
use crate::diff::{Change, Deploy, ServicePlan, diff};

const HEAD: &str = "[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:8080\"\n";

/// A file with a supervised service `web` (with `extra` lines in its
/// section) routed to, and `more` after it.
fn web(extra: &str, more: &str) -> String {
    format!(
        "{HEAD}\n[service.web]\ncommand = [\"app\", \"{{port}}\"]\nversion = \"v1\"\n{extra}\n\n[[route]]\nservice = \"web\"\n{more}"
    )
}

fn plan_of(old: &str, new: &str) -> ServicePlan {
    let d = diff(&ok(old), &ok(new));
    assert_eq!(d.services.len(), 1, "{d:#?}");
    assert_eq!(d.services[0].change, Change::Changed);
    d.services[0]
        .plan
        .clone()
        .expect("a changed service has a plan")
}

#[test]
fn the_same_file_changes_nothing() {
    let a = web("instances = 2", "");
    let d = diff(&ok(&a), &ok(&a));
    assert!(d.is_empty(), "{d:#?}");
    // Comments and key order are not changes.
    let b = format!("# a comment\n{}", web("instances = 2 # two", ""));
    assert!(diff(&ok(&a), &ok(&b)).is_empty());
}

#[test]
fn a_new_version_in_the_file_is_a_deploy_of_it() {
    let old = web("", "");
    let new = web("", "").replace("\"v1\"", "\"v2\"");
    let plan = plan_of(&old, &new);
    assert_eq!(
        plan.deploy,
        Some(Deploy {
            version: Some("v2".parse().unwrap()),
            targets: false,
            new_set: false,
        })
    );
    assert_eq!(plan.scale, None);
    let d = diff(&ok(&old), &ok(&new));
    let fields = &d.services[0].fields;
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert_eq!(
        (
            fields[0].name.as_str(),
            fields[0].old.as_str(),
            fields[0].new.as_str()
        ),
        ("version", "v1", "v2")
    );
}

#[test]
fn a_new_command_or_env_redeploys_the_version_serving() {
    let old = web("", "");
    let new = web("env = { MODE = \"fast\" }", "").replace("\"app\"", "\"app2\"");
    let plan = plan_of(&old, &new);
    let deploy = plan.deploy.expect("a deploy");
    assert_eq!(deploy.version, None, "the version serving, not the file's");
    assert!(!deploy.new_set);
    let d = diff(&ok(&old), &ok(&new));
    let names: Vec<&str> = d.services[0]
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["command", "env"]);
    assert_eq!(d.services[0].fields[0].old, "[app, {port}]");
    assert_eq!(d.services[0].fields[0].new, "[app2, {port}]");
}

#[test]
fn instances_alone_scale() {
    let plan = plan_of(&web("instances = 2", ""), &web("instances = 5", ""));
    assert_eq!(
        plan,
        ServicePlan {
            deploy: None,
            scale: Some((2, 5)),
        }
    );
    // With a new command, rolling replaces the instances in the running
    // set and scales after; blue-green starts the new set at its size.
    let plan = plan_of(
        &web("instances = 2", ""),
        &web("instances = 5", "").replace("\"app\"", "\"app2\""),
    );
    assert!(plan.deploy.is_some());
    assert_eq!(plan.scale, Some((2, 5)));
    let plan = plan_of(
        &web("instances = 2\nstrategy = \"blue_green\"", ""),
        &web("instances = 5\nstrategy = \"blue_green\"", "").replace("\"app\"", "\"app2\""),
    );
    assert!(plan.deploy.is_some());
    assert_eq!(plan.scale, None);
}

#[test]
fn what_a_set_was_started_with_needs_a_new_set() {
    for (old, new) in [
        ("", "ready_timeout = \"9s\""),
        ("", "restart = \"never\""),
        ("", "[service.web.health]\npath = \"/healthz\""),
        ("", "max_surge = 2"),
    ] {
        let plan = plan_of(&web(old, ""), &web(new, ""));
        let deploy = plan.deploy.unwrap_or_else(|| panic!("{new}: no deploy"));
        assert!(deploy.new_set, "{new}");
        assert_eq!(deploy.version, None, "{new}");
    }
}

#[test]
fn proxy_settings_apply_in_place() {
    for new in [
        "deploy_timeout = \"9m\"",
        "strategy = \"canary\"",
        "max_connections_per_member = 7",
        "[service.web.passive]\nconsecutive_failures = 3",
    ] {
        let plan = plan_of(&web("", ""), &web(new, ""));
        assert!(plan.in_place(), "{new}: {plan:?}");
    }
}

#[test]
fn external_targets_are_a_deploy_of_targets() {
    let svc = |targets: &str| {
        format!("{HEAD}\n[service.api]\ntargets = [{targets}]\n\n[[route]]\nservice = \"api\"\n")
    };
    let plan = plan_of(&svc("\"127.0.0.1:1\""), &svc("\"127.0.0.1:2\""));
    let deploy = plan.deploy.expect("a deploy");
    assert!(deploy.targets);
    let d = diff(&ok(&svc("\"127.0.0.1:1\"")), &ok(&svc("\"127.0.0.1:2\"")));
    assert_eq!(d.services[0].fields[0].name, "targets");
    assert_eq!(d.services[0].fields[0].new, "[127.0.0.1:2]");
}

#[test]
fn added_and_removed_services_routes_and_pools() {
    let old = web("", "");
    let new = format!(
        "{HEAD}\n[service.api]\ncommand = [\"api\", \"{{port}}\"]\nversion = \"a1\"\n\n[pool.static]\nmembers = [{{ address = \"127.0.0.1:9000\" }}]\n\n[[route]]\npath = \"/static/\"\npool = \"static\"\n\n[[route]]\nservice = \"api\"\n"
    );
    let d = diff(&ok(&old), &ok(&new));
    let services: Vec<(&str, Change)> = d
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.change))
        .collect();
    assert_eq!(services, [("web", Change::Removed), ("api", Change::Added)]);
    assert!(d.services.iter().all(|s| s.plan.is_none()));
    let pools: Vec<(&str, Change)> = d
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.change))
        .collect();
    assert_eq!(pools, [("static", Change::Added)]);
    let routes: Vec<(&str, Change)> = d
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.change))
        .collect();
    assert_eq!(
        routes,
        [
            ("on http → service web", Change::Removed),
            ("path /static/ on http → pool static", Change::Added),
            ("on http → service api", Change::Added),
        ]
    );
}

#[test]
fn route_order_is_a_change() {
    let two = |a: &str, b: &str| {
        format!(
            "{HEAD}\n[pool.p]\nmembers = [{{ address = \"127.0.0.1:9000\" }}]\n\n[[route]]\npath = \"{a}\"\npool = \"p\"\n\n[[route]]\npath = \"{b}\"\npool = \"p\"\n"
        )
    };
    let d = diff(&ok(&two("/a", "/b")), &ok(&two("/b", "/a")));
    assert_eq!(d.routes.len(), 1, "{d:#?}");
    assert_eq!(d.routes[0].change, Change::Changed);
}

#[test]
fn listeners_pools_certificates_and_settings() {
    let old = format!(
        "{HEAD}\n[pool.p]\nmembers = [{{ address = \"127.0.0.1:9000\" }}]\n\n[[route]]\npool = \"p\"\n"
    );
    let new = old
        .replace("127.0.0.1:8080", "127.0.0.1:8081")
        .replace("127.0.0.1:9000\" }", "127.0.0.1:9001\", weight = 2 }")
        + "\n[proxy]\ndrain_timeout = \"1s\"\n";
    let d = diff(&ok(&old), &ok(&new));
    assert_eq!(d.listeners[0].fields[0].name, "address");
    assert_eq!(d.listeners[0].fields[0].new, "127.0.0.1:8081");
    assert_eq!(d.pools[0].fields[0].name, "members");
    assert_eq!(d.pools[0].fields[0].old, "[127.0.0.1:9000 (weight 1)]");
    assert_eq!(d.pools[0].fields[0].new, "[127.0.0.1:9001 (weight 2)]");
    assert_eq!(d.settings[0].name, "proxy");
    assert!(d.certificates.is_empty());
}

#[test]
fn json_names_every_part() {
    let d = diff(&ok(&web("", "")), &ok(&web("instances = 3", "")));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["services"][0]["name"], "web");
    assert_eq!(json["services"][0]["change"], "changed");
    assert_eq!(
        json["services"][0]["plan"]["scale"],
        serde_json::json!([1, 3])
    );
    assert_eq!(json["services"][0]["fields"][0]["name"], "instances");
}
