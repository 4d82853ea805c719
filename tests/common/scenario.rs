//! One test's topics and enforcer config: `Scenario` and its `Destination`s.

use std::path::PathBuf;
use std::time::Instant;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};

use super::broker::{admin, bootstrap, runtime, unique, WAIT};
use super::enforcer::{free_port, Enforcer};
use super::offsets::{committed_by, wait_committed};
use super::records::{produce, produce_one, read_all, Record};
use super::topics::{create_topic, create_topic_with};

/// A destination of a test scenario.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub topic: String,
    pub categories: Vec<String>,
    pub integration_names: Option<Vec<String>>,
    pub match_mode: &'static str,
    pub partitions: i32,
    /// Topic-level configs for the destination topic.
    pub topic_config: Vec<(&'static str, &'static str)>,
    pub channel: Option<String>,
    pub deletion_topic: Option<String>,
}

impl Destination {
    pub fn new(name: &str, categories: &[&str]) -> Destination {
        Destination {
            name: name.to_owned(),
            topic: String::new(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            integration_names: None,
            match_mode: "all",
            partitions: 1,
            topic_config: Vec::new(),
            channel: None,
            deletion_topic: None,
        }
    }

    pub fn channel(mut self, channel: &str) -> Destination {
        self.channel = Some(channel.to_owned());
        self
    }

    pub fn topic_config(mut self, key: &'static str, value: &'static str) -> Destination {
        self.topic_config.push((key, value));
        self
    }

    pub fn partitions(mut self, partitions: i32) -> Destination {
        self.partitions = partitions;
        self
    }

    pub fn integration_names(mut self, names: &[&str]) -> Destination {
        self.integration_names = Some(names.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    pub fn match_any(mut self) -> Destination {
        self.match_mode = "any";
        self
    }
}

/// The topics and config of one test: every name is unique to it.
pub struct Scenario {
    pub group: String,
    pub input: String,
    pub consent: String,
    pub dead_letter: String,
    pub destinations: Vec<Destination>,
    pub input_partitions: i32,
    pub dir: PathBuf,
    /// Extra TOML appended to the generated config (whole tables).
    pub extra: String,
    /// Extra keys for the `[consent]` table.
    pub consent_extra: String,
    /// Extra keys for the `[input]` table.
    pub input_extra: String,
    /// Extra entries for `[kafka.properties]`.
    pub kafka_properties: String,
    /// Extra keys for the `[delivery]` table; `{instance}` becomes the instance's name.
    pub delivery_extra: String,
    /// Lines added to `[dead_letter]`.
    pub dead_letter_extra: String,
}

impl Scenario {
    pub fn new(name: &str, destinations: Vec<Destination>) -> Scenario {
        Scenario::with_partitions(name, destinations, 1)
    }

    pub fn with_partitions(
        name: &str,
        destinations: Vec<Destination>,
        input_partitions: i32,
    ) -> Scenario {
        Scenario::with_topics(name, destinations, input_partitions, 1)
    }

    /// Input and consent topics with the given partition counts.
    pub fn with_topics(
        name: &str,
        destinations: Vec<Destination>,
        input_partitions: i32,
        consent_partitions: i32,
    ) -> Scenario {
        let scenario = Scenario::named(name, destinations, input_partitions);
        create_topic(&scenario.input, input_partitions, false);
        create_topic(&scenario.consent, consent_partitions, true);
        create_topic(&scenario.dead_letter, 1, false);
        for dest in &scenario.destinations {
            create_topic_with(&dest.topic, dest.partitions, &dest.topic_config);
        }
        scenario
    }

    /// Like `with_topics`, but every topic (and `extra_topics`, unconfigured) is created in one
    /// request, without waiting for the broker's metadata to show them: as a deploy script that
    /// starts the enforcer right after creating its topics would.
    pub fn just_created(
        name: &str,
        destinations: Vec<Destination>,
        input_partitions: i32,
        consent_partitions: i32,
        extra_topics: &[(&str, i32)],
    ) -> Scenario {
        let scenario = Scenario::named(name, destinations, input_partitions);
        let mut topics = vec![
            NewTopic::new(
                &scenario.input,
                input_partitions,
                TopicReplication::Fixed(1),
            ),
            NewTopic::new(
                &scenario.consent,
                consent_partitions,
                TopicReplication::Fixed(1),
            )
            .set("cleanup.policy", "compact"),
            NewTopic::new(&scenario.dead_letter, 1, TopicReplication::Fixed(1)),
        ];
        for dest in &scenario.destinations {
            let mut topic = NewTopic::new(&dest.topic, dest.partitions, TopicReplication::Fixed(1));
            for (key, value) in &dest.topic_config {
                topic = topic.set(key, value);
            }
            topics.push(topic);
        }
        for (topic, partitions) in extra_topics {
            topics.push(NewTopic::new(
                topic,
                *partitions,
                TopicReplication::Fixed(1),
            ));
        }
        let results = runtime()
            .block_on(admin().create_topics(&topics, &AdminOptions::new()))
            .expect("create topics");
        for result in results {
            result.expect("topic created");
        }
        scenario
    }

    /// The names and config of a scenario; its topics are not created.
    fn named(name: &str, destinations: Vec<Destination>, input_partitions: i32) -> Scenario {
        let id = unique(name);
        let destinations: Vec<Destination> = destinations
            .into_iter()
            .map(|mut d| {
                d.topic = format!("{id}.dest.{}", d.name);
                d
            })
            .collect();
        let scenario = Scenario {
            group: format!("{id}.group"),
            input: format!("{id}.events"),
            consent: format!("{id}.consent"),
            dead_letter: format!("{id}.dead-letter"),
            destinations,
            input_partitions,
            dir: std::env::temp_dir().join(&id),
            extra: String::new(),
            consent_extra: String::new(),
            input_extra: String::new(),
            kafka_properties: String::new(),
            delivery_extra: String::new(),
            dead_letter_extra: String::new(),
        };
        std::fs::create_dir_all(&scenario.dir).unwrap();
        scenario
    }

    pub fn topic(&self, destination: &str) -> &str {
        &self
            .destinations
            .iter()
            .find(|d| d.name == destination)
            .expect("destination in scenario")
            .topic
    }

    pub fn config(&self, metrics_port: u16) -> String {
        let mut toml = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\n\
             [kafka.consumer_properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n\
             [kafka.properties]\n{}\n\
             [input]\ntopics = [\"{}\"]\n{}\n\
             [consent]\ntopic = \"{}\"\n{}\n\
             [dead_letter]\ntopic = \"{}\"\n{}\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [delivery]\ncommit_interval_ms = 200\ndrain_timeout_secs = 20\n{}\n",
            bootstrap(),
            self.group,
            self.kafka_properties,
            self.input,
            self.input_extra,
            self.consent,
            self.consent_extra,
            self.dead_letter,
            self.dead_letter_extra,
            self.delivery_extra,
        );
        for dest in &self.destinations {
            let categories: Vec<String> =
                dest.categories.iter().map(|c| format!("{c:?}")).collect();
            toml.push_str(&format!(
                "\n[[destination]]\nname = {:?}\ntopic = {:?}\ncategories = [{}]\nmatch = {:?}\n",
                dest.name,
                dest.topic,
                categories.join(", "),
                dest.match_mode
            ));
            if let Some(names) = &dest.integration_names {
                let names: Vec<String> = names.iter().map(|c| format!("{c:?}")).collect();
                toml.push_str(&format!("integration_names = [{}]\n", names.join(", ")));
            }
            if let Some(channel) = &dest.channel {
                toml.push_str(&format!("channel = {channel:?}\n"));
            }
            if let Some(topic) = &dest.deletion_topic {
                toml.push_str(&format!("deletion_topic = {topic:?}\n"));
            }
        }
        toml.push('\n');
        toml.push_str(&self.extra);
        toml
    }

    /// Writes the config and starts an enforcer on it.
    pub fn start(&self) -> Enforcer {
        self.start_instance("a")
    }

    /// Starts an enforcer named `instance` (its `{instance}` in `delivery_extra`).
    pub fn start_instance(&self, instance: &str) -> Enforcer {
        let port = free_port();
        let path = self.dir.join(format!("enforcer-{instance}-{port}.toml"));
        std::fs::write(&path, self.config(port).replace("{instance}", instance)).unwrap();
        Enforcer::start(&path, port)
    }

    /// Starts an enforcer that reaches the cluster at `servers` (its `KAFKA_BOOTSTRAP_SERVERS`),
    /// e.g. through another listener than the one the test helpers use.
    pub fn start_through(&self, servers: &str) -> Enforcer {
        let port = free_port();
        let path = self.dir.join(format!("enforcer-{port}.toml"));
        std::fs::write(&path, self.config(port).replace("{instance}", "a")).unwrap();
        Enforcer::start_with_bootstrap(&path, port, servers)
    }

    /// Starts an enforcer and waits until it judges events.
    pub fn start_ready(&self) -> Enforcer {
        let enforcer = self.start();
        enforcer.wait_ready();
        enforcer
    }

    pub fn send_events(&self, events: &[(&str, &str)]) {
        let records: Vec<Record> = events.iter().map(|(k, v)| Record::new(k, v)).collect();
        produce(&self.input, &records);
    }

    pub fn send_consent(&self, user: &str, value: &str) {
        produce_one(&self.consent, user, value);
    }

    /// Waits until every event written so far is judged, written and committed.
    pub fn wait_processed(&self) {
        wait_committed(&self.group, &self.input);
    }

    /// `wait_processed`, with `enforcer`'s log in the failure message.
    pub fn wait_processed_by(&self, enforcer: &Enforcer) {
        if let Err(seen) = committed_by(&self.group, &self.input, Instant::now() + WAIT) {
            panic!(
                "group {} did not commit {}: {seen}; log:\n{}",
                self.group,
                self.input,
                enforcer.logs()
            );
        }
    }

    pub fn delivered(&self, destination: &str) -> Vec<Record> {
        read_all(self.topic(destination))
    }

    pub fn dead_letters(&self) -> Vec<Record> {
        read_all(&self.dead_letter)
    }
}
