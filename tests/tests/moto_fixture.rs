//! The moto fixture starts a real server the SDK can use, and stops it by pid.

use gantry_tests::moto::Moto;
use gantry_tests::wait_until;
use std::path::Path;
use std::time::Duration;

async fn sqs(moto: &Moto) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&moto.sdk_config().await)
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_serves_sqs_resets_and_stops_by_pid() {
    let moto = Moto::start().expect("moto starts");
    let client = sqs(&moto).await;

    let url = client
        .create_queue()
        .queue_name("gantry-fixture")
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    client
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .expect("send");
    let received = client
        .receive_message()
        .queue_url(&url)
        .wait_time_seconds(2)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<_> = received
        .messages()
        .iter()
        .filter_map(|m| m.body())
        .collect();
    assert_eq!(bodies, vec!["hello"]);

    moto.reset().expect("reset");
    let queues = client.list_queues().send().await.expect("list");
    assert!(queues.queue_urls().is_empty(), "reset wipes queues");

    if let Some(pid) = moto.pid() {
        let proc_dir = format!("/proc/{pid}");
        assert!(Path::new(&proc_dir).exists());
        drop(moto);
        assert!(
            wait_until(Duration::from_secs(10), || !Path::new(&proc_dir).exists()),
            "moto_server {pid} still running after drop"
        );
    }
}
