use super::*;
use proptest::prelude::*;
use serde_json::json;

const MIN: Millis = 60 * 1000;

fn read(value: serde_json::Value) -> Result<TrafficRouting, String> {
    serde_json::from_value(value).map_err(|error| error.to_string())
}

fn check(value: serde_json::Value) -> Result<TrafficRouting, RoutingError> {
    let config: TrafficRoutingConfig = serde_json::from_value(value).unwrap();
    TrafficRouting::try_from(config)
}

fn schedule(routing: TrafficRouting) -> Vec<(u32, Millis)> {
    routing
        .steps()
        .into_iter()
        .map(|step| (step.percent, step.offset_ms))
        .collect()
}

#[test]
fn reads_and_writes_codedeploys_shapes() {
    let canary = json!({
        "type": "TimeBasedCanary",
        "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}
    });
    let linear = json!({
        "type": "TimeBasedLinear",
        "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 1}
    });
    let all = json!({"type": "AllAtOnce"});
    for (value, expected) in [
        (canary, TrafficRouting::canary(10, 5).unwrap()),
        (linear, TrafficRouting::linear(10, 1).unwrap()),
        (all, TrafficRouting::AllAtOnce),
    ] {
        let routing = read(value.clone()).unwrap();
        assert_eq!(routing, expected);
        assert_eq!(serde_json::to_value(routing).unwrap(), value);
    }
}

#[test]
fn reading_checks_the_config() {
    let error = read(json!({
        "type": "TimeBasedCanary",
        "timeBasedCanary": {"canaryPercentage": 0, "canaryInterval": 5}
    }))
    .unwrap_err();
    assert_eq!(
        error,
        "trafficRoutingConfig.timeBasedCanary.canaryPercentage: must be 1 to 99, found 0"
    );
}

#[test]
fn percentages_must_be_1_to_99() {
    for found in [0, 100, 250] {
        assert_eq!(
            TrafficRouting::canary(found, 5),
            Err(RoutingError::Percentage {
                field: "timeBasedCanary.canaryPercentage",
                found
            })
        );
        assert_eq!(
            TrafficRouting::linear(found, 5),
            Err(RoutingError::Percentage {
                field: "timeBasedLinear.linearPercentage",
                found
            })
        );
    }
    for ok in [1, 50, 99] {
        assert!(TrafficRouting::canary(ok, 5).is_ok());
        assert!(TrafficRouting::linear(ok, 5).is_ok());
    }
}

#[test]
fn intervals_must_be_1_to_the_maximum_minutes() {
    assert_eq!(
        TrafficRouting::canary(10, 0).unwrap_err().to_string(),
        "trafficRoutingConfig.timeBasedCanary.canaryInterval: must be 1 to 2880 minutes, found 0"
    );
    assert_eq!(
        TrafficRouting::linear(10, MAX_INTERVAL_MINUTES + 1),
        Err(RoutingError::Interval {
            field: "timeBasedLinear.linearInterval",
            found: MAX_INTERVAL_MINUTES + 1
        })
    );
    assert!(TrafficRouting::linear(10, MAX_INTERVAL_MINUTES).is_ok());
    assert!(TrafficRouting::canary(10, 1).is_ok());
}

#[test]
fn the_type_must_be_known_and_present() {
    assert_eq!(
        check(json!({"type": "TimeBasedExponential"})),
        Err(RoutingError::Type(Some("TimeBasedExponential".into())))
    );
    assert_eq!(check(json!({})), Err(RoutingError::Type(None)));
    assert_eq!(
        RoutingError::Type(None).to_string(),
        "trafficRoutingConfig.type: must be TimeBasedCanary, TimeBasedLinear or AllAtOnce, found None"
    );
}

#[test]
fn the_sub_object_of_the_type_is_required_and_the_other_absent() {
    assert_eq!(
        check(json!({"type": "TimeBasedLinear"}))
            .unwrap_err()
            .to_string(),
        "trafficRoutingConfig.timeBasedLinear: required when type is TimeBasedLinear"
    );
    assert_eq!(
        check(json!({"type": "TimeBasedCanary"})),
        Err(RoutingError::Missing {
            field: "timeBasedCanary",
            kind: "TimeBasedCanary"
        })
    );
    assert_eq!(
        check(json!({
            "type": "TimeBasedCanary",
            "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5},
            "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 1}
        }))
        .unwrap_err()
        .to_string(),
        "trafficRoutingConfig.timeBasedLinear: must be absent when type is TimeBasedCanary"
    );
    assert_eq!(
        check(json!({
            "type": "AllAtOnce",
            "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}
        })),
        Err(RoutingError::Unexpected {
            field: "timeBasedCanary",
            kind: "AllAtOnce"
        })
    );
}

#[test]
fn errors_carry_codedeploys_exception() {
    assert_eq!(
        TrafficRouting::canary(0, 5).unwrap_err().exception(),
        "InvalidTrafficRoutingConfigurationException"
    );
}

#[test]
fn every_predefined_name_has_its_routing() {
    let expected = [
        TrafficRouting::canary(10, 5),
        TrafficRouting::canary(10, 10),
        TrafficRouting::canary(10, 15),
        TrafficRouting::canary(10, 30),
        TrafficRouting::linear(10, 1),
        TrafficRouting::linear(10, 2),
        TrafficRouting::linear(10, 3),
        TrafficRouting::linear(10, 10),
        Ok(TrafficRouting::AllAtOnce),
    ];
    for (name, routing) in PREDEFINED_NAMES.into_iter().zip(expected) {
        assert_eq!(predefined(name), Some(routing.unwrap()), "{name}");
    }
    assert_eq!(predefined("CodeDeployDefault.AllAtOnce"), None);
    assert_eq!(
        predefined("CodeDeployDefault.LambdaCanary10Percent20Minutes"),
        None
    );
}

#[test]
fn predefined_names_are_codedeploys() {
    assert_eq!(
        PREDEFINED_NAMES,
        [
            "CodeDeployDefault.LambdaCanary10Percent5Minutes",
            "CodeDeployDefault.LambdaCanary10Percent10Minutes",
            "CodeDeployDefault.LambdaCanary10Percent15Minutes",
            "CodeDeployDefault.LambdaCanary10Percent30Minutes",
            "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
            "CodeDeployDefault.LambdaLinear10PercentEvery2Minutes",
            "CodeDeployDefault.LambdaLinear10PercentEvery3Minutes",
            "CodeDeployDefault.LambdaLinear10PercentEvery10Minutes",
            "CodeDeployDefault.LambdaAllAtOnce",
        ]
    );
}

#[test]
fn canary_steps() {
    assert_eq!(
        schedule(predefined(LAMBDA_CANARY_10_PERCENT_5_MINUTES).unwrap()),
        [(10, 0), (100, 5 * MIN)]
    );
    assert_eq!(
        schedule(predefined(LAMBDA_CANARY_10_PERCENT_30_MINUTES).unwrap()),
        [(10, 0), (100, 30 * MIN)]
    );
    assert_eq!(
        schedule(TrafficRouting::canary(99, 1).unwrap()),
        [(99, 0), (100, MIN)]
    );
}

#[test]
fn linear_steps() {
    let ten_every_minute: Vec<(u32, Millis)> = (1..=10)
        .map(|k| (k * 10, (k as Millis - 1) * MIN))
        .collect();
    assert_eq!(
        schedule(predefined(LAMBDA_LINEAR_10_PERCENT_EVERY_1_MINUTE).unwrap()),
        ten_every_minute
    );
    assert_eq!(
        schedule(TrafficRouting::linear(30, 1).unwrap()),
        [(30, 0), (60, MIN), (90, 2 * MIN), (100, 3 * MIN)]
    );
    assert_eq!(
        schedule(TrafficRouting::linear(50, 7).unwrap()),
        [(50, 0), (100, 7 * MIN)]
    );
    assert_eq!(
        schedule(TrafficRouting::linear(99, 2).unwrap()),
        [(99, 0), (100, 2 * MIN)]
    );
    let ten_every_ten = schedule(predefined(LAMBDA_LINEAR_10_PERCENT_EVERY_10_MINUTES).unwrap());
    assert_eq!(ten_every_ten.last(), Some(&(100, 90 * MIN)));
    assert_eq!(TrafficRouting::linear(1, 1).unwrap().steps().len(), 100);
}

#[test]
fn all_at_once_is_one_step() {
    assert_eq!(schedule(TrafficRouting::AllAtOnce), [(100, 0)]);
    assert_eq!(
        schedule(predefined(LAMBDA_ALL_AT_ONCE).unwrap()),
        [(100, 0)]
    );
}

#[test]
fn unchecked_values_still_make_a_sane_schedule() {
    let canary = TrafficRouting::TimeBasedCanary(TimeBasedCanary {
        canary_percentage: 0,
        canary_interval: 0,
    });
    assert_eq!(schedule(canary), [(1, 0), (100, MIN)]);
    let whole = TrafficRouting::TimeBasedLinear(TimeBasedLinear {
        linear_percentage: 100,
        linear_interval: 5,
    });
    assert_eq!(schedule(whole), [(100, 0)]);
    let over = TrafficRouting::TimeBasedCanary(TimeBasedCanary {
        canary_percentage: 120,
        canary_interval: 5,
    });
    assert_eq!(schedule(over), [(100, 0)]);
}

fn any_routing() -> impl Strategy<Value = TrafficRouting> {
    prop_oneof![
        (1u32..=99, 1u32..=MAX_INTERVAL_MINUTES)
            .prop_map(|(p, n)| TrafficRouting::canary(p, n).unwrap()),
        (1u32..=99, 1u32..=MAX_INTERVAL_MINUTES)
            .prop_map(|(p, n)| TrafficRouting::linear(p, n).unwrap()),
        Just(TrafficRouting::AllAtOnce),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    /// Every schedule starts at once, moves forward in weight and time, and ends with all
    /// the traffic on the target version.
    #[test]
    fn schedules_rise_to_100(routing in any_routing()) {
        let steps = routing.steps();
        prop_assert!(!steps.is_empty());
        prop_assert_eq!(steps[0].offset_ms, 0);
        prop_assert_eq!(steps.last().unwrap().percent, 100);
        for pair in steps.windows(2) {
            prop_assert!(pair[0].percent < pair[1].percent);
            prop_assert!(pair[0].offset_ms < pair[1].offset_ms);
        }
        prop_assert!(steps.iter().all(|step| (1..=100).contains(&step.percent)));
    }

    /// Linear p takes ceil(100 / p) steps, one interval apart.
    #[test]
    fn linear_step_count_and_spacing(p in 1u32..=99, n in 1u32..=MAX_INTERVAL_MINUTES) {
        let steps = TrafficRouting::linear(p, n).unwrap().steps();
        prop_assert_eq!(steps.len() as u32, 100u32.div_ceil(p));
        for (index, step) in steps.iter().enumerate() {
            prop_assert_eq!(step.offset_ms, index as Millis * Millis::from(n) * MIN);
            prop_assert_eq!(step.percent, ((index as u32 + 1) * p).min(100));
        }
    }

    /// Canary p over n minutes: p at once, 100 after n minutes.
    #[test]
    fn canary_is_two_steps(p in 1u32..=99, n in 1u32..=MAX_INTERVAL_MINUTES) {
        let steps = TrafficRouting::canary(p, n).unwrap().steps();
        prop_assert_eq!(
            steps,
            vec![
                Step { percent: p, offset_ms: 0 },
                Step { percent: 100, offset_ms: Millis::from(n) * MIN },
            ]
        );
    }

    /// What is written reads back the same.
    #[test]
    fn serde_round_trips(routing in any_routing()) {
        let json = serde_json::to_string(&routing).unwrap();
        prop_assert_eq!(serde_json::from_str::<TrafficRouting>(&json).unwrap(), routing);
    }

    /// Reading accepts exactly the values the rules allow.
    #[test]
    fn reading_accepts_exactly_the_allowed_values(p in 0u32..=120, n in 0u32..=3000) {
        let allowed = (1..=99).contains(&p) && (1..=MAX_INTERVAL_MINUTES).contains(&n);
        let canary = json!({
            "type": "TimeBasedCanary",
            "timeBasedCanary": {"canaryPercentage": p, "canaryInterval": n}
        });
        let linear = json!({
            "type": "TimeBasedLinear",
            "timeBasedLinear": {"linearPercentage": p, "linearInterval": n}
        });
        prop_assert_eq!(read(canary).is_ok(), allowed);
        prop_assert_eq!(read(linear).is_ok(), allowed);
    }
}

#[test]
fn custom_lambda_configs_are_checked_name_first() {
    let routing = TrafficRoutingConfig::from(TrafficRouting::linear(25, 2).unwrap());
    let config = LambdaDeploymentConfig::custom("Gantry.Linear25Every2", routing.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        json!({
            "deploymentConfigName": "Gantry.Linear25Every2",
            "trafficRoutingConfig": {
                "type": "TimeBasedLinear",
                "timeBasedLinear": {"linearPercentage": 25, "linearInterval": 2}
            }
        })
    );
    let reserved = LambdaDeploymentConfig::custom(LAMBDA_ALL_AT_ONCE, routing.clone()).unwrap_err();
    assert_eq!(
        reserved,
        LambdaConfigError::Name(crate::config::ConfigError::ReservedName(
            LAMBDA_ALL_AT_ONCE.into()
        ))
    );
    assert_eq!(reserved.exception(), "InvalidDeploymentConfigNameException");
    assert_eq!(
        LambdaDeploymentConfig::custom("", routing)
            .unwrap_err()
            .to_string(),
        "deploymentConfigName: must be 1 to 100 characters, found 0"
    );
    let bad = TrafficRoutingConfig {
        kind: Some("TimeBasedCanary".into()),
        ..Default::default()
    };
    let refused = LambdaDeploymentConfig::custom("Gantry.Canary", bad).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "trafficRoutingConfig.timeBasedCanary: required when type is TimeBasedCanary"
    );
    assert_eq!(
        refused.exception(),
        "InvalidTrafficRoutingConfigurationException"
    );
}

#[test]
fn all_predefined_lambda_configs() {
    let all = LambdaDeploymentConfig::all_predefined();
    assert_eq!(all.len(), 9);
    assert!(all.iter().map(|c| c.name.as_str()).eq(PREDEFINED_NAMES));
    assert_eq!(
        LambdaDeploymentConfig::predefined("CodeDeployDefault.OneAtATime"),
        None
    );
}
