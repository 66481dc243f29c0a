use std::collections::BTreeSet;

use super::kb::Relation;
use super::questions::{implied_answer, QuestionKind};
use super::teacher::{sample, Flaw, Habit};
use super::*;
use crate::plausibility::VagueLabel;

fn small() -> WorldSettings {
    WorldSettings {
        seed: 5,
        sizes: KbSizes {
            objects: 20,
            materials: 6,
            creatures: 20,
            places: 6,
            foods: 6,
        },
        which_hot: 20,
        ..WorldSettings::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_another_world() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    World::generate(&small()).unwrap().write(&a).unwrap();
    World::generate(&small()).unwrap().write(&b).unwrap();
    let other = WorldSettings { seed: 6, ..small() };
    World::generate(&other).unwrap().write(&c).unwrap();
    for f in [
        "train.jsonl",
        "dev.jsonl",
        "test.jsonl",
        "teacher_gpt3_train.jsonl",
        "world.json",
    ] {
        let x = std::fs::read(a.join(f)).unwrap();
        assert_eq!(x, std::fs::read(b.join(f)).unwrap(), "{f}");
        assert_ne!(x, std::fs::read(c.join(f)).unwrap(), "{f}");
    }
}

#[test]
fn held_out_questions_are_new_but_their_facts_are_taught() {
    let w = World::generate(&small()).unwrap();
    assert!(!w.dev.is_empty() && !w.test.is_empty());
    let taught: BTreeSet<String> = w
        .train
        .iter()
        .flat_map(|q| q.facts.iter().map(Fact::sentence))
        .collect();
    let train_q: BTreeSet<&str> = w.train.iter().map(|q| q.question.as_str()).collect();
    for q in w.dev.iter().chain(&w.test) {
        assert!(!train_q.contains(q.question.as_str()), "{}", q.question);
        assert!(q.facts.len() >= 2, "{}", q.question);
        for f in &q.facts {
            assert!(
                taught.contains(&f.sentence()),
                "{} needs {}",
                q.question,
                f.sentence()
            );
        }
    }
}

#[test]
fn answers_follow_from_the_needed_facts_and_are_balanced() {
    let w = World::generate(&small()).unwrap();
    let all: Vec<&WorldQuestion> = w.train.iter().chain(&w.dev).chain(&w.test).collect();
    let truth = w.kb.sentences();
    for q in &all {
        assert_eq!(
            implied_answer(&q.kind, &q.facts).as_deref(),
            Some(q.answer.as_str())
        );
        for f in &q.facts {
            assert_eq!(truth.get(&f.sentence()), Some(f), "{}", f.sentence());
        }
    }
    let yes = all.iter().filter(|q| q.answer == "yes").count();
    let no = all.iter().filter(|q| q.answer == "no").count();
    let share = yes as f64 / (yes + no) as f64;
    assert!((0.3..=0.7).contains(&share), "yes share {share}");
}

#[test]
fn each_teacher_flaw_breaks_what_it_is_aimed_at() {
    let w = World::generate(&small()).unwrap();
    let truth = w.kb.sentences();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let sentences = |r: &str| -> Vec<String> {
        r.split_inclusive('.')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for q in w.train.iter().take(40) {
        let ok = sample(&mut rng, &w.kb, q, Flaw::None);
        assert_eq!(
            (ok.rationale.as_str(), ok.answer.as_str()),
            (q.rationale().as_str(), q.answer.as_str())
        );
        let f = sample(&mut rng, &w.kb, q, Flaw::FalseFact);
        assert!(
            sentences(&f.rationale)
                .iter()
                .any(|s| !truth.contains_key(s)),
            "{}",
            f.rationale
        );
        let n = sample(&mut rng, &w.kb, q, Flaw::NonSequitur);
        assert_eq!(n.rationale, q.rationale());
        assert_ne!(n.answer, q.answer);
        let r = sample(&mut rng, &w.kb, q, Flaw::Repetition);
        let s = sentences(&r.rationale);
        assert!(
            s.len() > s.iter().collect::<BTreeSet<_>>().len(),
            "{}",
            r.rationale
        );
        let v = sample(&mut rng, &w.kb, q, Flaw::Vague);
        let needed: BTreeSet<String> = q.facts.iter().map(Fact::sentence).collect();
        assert!(
            sentences(&v.rationale).iter().all(|s| !needed.contains(s)),
            "{}",
            v.rationale
        );
    }
}

#[test]
fn written_files_load_and_the_silver_data_reaches_the_gold_answers() {
    let dir = tempfile::tempdir().unwrap();
    let summary = World::generate(&small())
        .unwrap()
        .write(dir.path())
        .unwrap();
    let train = crate::data::load_examples(&dir.path().join("train.jsonl")).unwrap();
    let dev = crate::data::load_examples(&dir.path().join("dev.jsonl")).unwrap();
    let teacher = crate::data::load_teacher(&dir.path().join("teacher_gpt3_train.jsonl")).unwrap();
    assert_eq!(train.len(), summary.silver);
    assert_eq!(dev.len(), summary.dev_questions);
    assert_eq!(teacher.len(), summary.teacher_samples);
    assert!(
        (0.6..0.95).contains(&summary.teacher_accuracy),
        "teacher accuracy {}",
        summary.teacher_accuracy
    );
    assert!(summary.false_fact > 0 && summary.vague > 0 && summary.repetition > 0);
    let back: World =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(WORLD_FILE)).unwrap())
            .unwrap();
    assert_eq!(back.dev.len(), dev.len());
}

#[test]
fn bad_settings_are_refused() {
    let bad = WorldSettings {
        flaws: FlawRates {
            false_fact: 0.9,
            vague: 0.5,
            ..FlawRates::default()
        },
        ..small()
    };
    assert!(World::generate(&bad).is_err());
    let tiny = WorldSettings {
        sizes: KbSizes {
            places: 1,
            ..small().sizes
        },
        ..small()
    };
    assert!(World::generate(&tiny)
        .unwrap_err()
        .to_string()
        .contains("places"));
}

#[test]
fn a_stereotype_keeps_the_answer_and_names_one_entity_per_property() {
    let w = World::generate(&small()).unwrap();
    let index = super::truth::TruthIndex::new(&w);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let (mut false_facts, mut named) = (0, BTreeSet::new());
    for q in &w.train {
        let s = sample(&mut rng, &w.kb, q, Flaw::Stereotype);
        assert_eq!(s.answer, q.answer);
        let t = index
            .score(&q.question, &s.rationale, Some(&s.answer))
            .unwrap();
        assert!(t.entailed && !t.repeated, "{}", s.rationale);
        if t.fact_accuracy.unwrap() < 1.0 {
            false_facts += 1;
        }
        if matches!(q.kind, QuestionKind::LivesCold { .. }) {
            named.insert(s.rationale.split(" lives in ").nth(1).unwrap().to_string());
        }
    }
    // many questions' true entity is not the stereotype (a third here), and every cold question
    // names one of two places
    assert!(
        false_facts * 3 > w.train.len(),
        "{false_facts} of {}",
        w.train.len()
    );
    assert!(!named.is_empty() && named.len() <= 2, "{named:?}");
}

#[test]
fn the_truth_measures_see_each_teacher_flaw() {
    // the stereotype is a habit only: give one form that habit so every flaw occurs
    let w = World::generate(&WorldSettings {
        habits: vec![Habit {
            form: Form::LivesCold,
            flaw: Flaw::Stereotype,
            rate: 0.5,
        }],
        ..small()
    })
    .unwrap();
    assert!(w
        .teacher()
        .iter()
        .any(|t| t.sample.flaw == Flaw::Stereotype));
    let index = super::truth::TruthIndex::new(&w);
    for row in w.teacher() {
        let s = index
            .score(
                &row.question,
                &row.sample.rationale,
                Some(&row.sample.answer),
            )
            .expect("a question of the world");
        match row.sample.flaw {
            Flaw::None => {
                assert!(s.fact_accuracy == Some(1.0) && s.entailed && s.complete && !s.repeated)
            }
            Flaw::FalseFact => assert!(s.fact_accuracy.unwrap() < 1.0 && !s.complete),
            Flaw::NonSequitur => assert!(!s.entailed && s.complete),
            Flaw::Repetition => assert!(s.repeated && s.entailed),
            Flaw::Vague => assert!(s.fact_accuracy.is_none() && !s.complete),
            Flaw::Stereotype => assert!(s.entailed && row.sample.answer == row.gold),
        }
    }
    assert!(index
        .score("Is this question from elsewhere?", "x.", None)
        .is_none());
}

#[test]
fn reading_questions_state_their_facts_about_names_outside_the_world() {
    let settings = WorldSettings {
        reading_questions: 40,
        ..small()
    };
    let w = World::generate(&settings).unwrap();
    assert_eq!(w.reading.len(), 40);
    let names: std::collections::BTreeSet<&String> = w.kb.names().collect();
    for q in &w.reading {
        // every needed fact is in the question, and none is about the world's entities
        for f in &q.facts {
            assert!(q.question.contains(&f.sentence()), "{}", q.question);
            assert!(!names.contains(&f.subject), "{}", q.question);
        }
        assert_eq!(
            super::questions::implied_answer(&q.kind, &q.facts).as_deref(),
            Some(q.answer.as_str())
        );
    }
    // the same world otherwise, and the reading questions only in training
    let plain = World::generate(&small()).unwrap();
    assert_eq!(
        (&plain.kb, &plain.train, &plain.dev),
        (&w.kb, &w.train, &w.dev)
    );
    let dir = tempfile::tempdir().unwrap();
    w.write(dir.path()).unwrap();
    let text = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let q = &w.reading[0].question;
    let quoted = serde_json::to_string(q).unwrap();
    assert!(text(super::READING_FILE).contains(&quoted));
    for f in ["train.jsonl", "dev.jsonl", "test.jsonl"] {
        assert!(!text(f).contains(&quoted), "{f}");
    }
    // written again without reading questions, the folder holds none
    plain.write(dir.path()).unwrap();
    assert!(!dir.path().join(super::READING_FILE).exists());
}

#[test]
fn forms_choose_the_questions_and_the_reversed_forms_reverse_the_answer() {
    let only = |forms: Vec<Form>| World::generate(&WorldSettings { forms, ..small() }).unwrap();
    let w = only(vec![Form::Sinks, Form::LivesHot]);
    let all: Vec<&WorldQuestion> = w.train.iter().chain(&w.dev).chain(&w.test).collect();
    // one question per object and per creature, of those forms only
    assert_eq!(all.len(), 40);
    for q in &all {
        match &q.kind {
            QuestionKind::Sinks { object } => {
                let floats = &w
                    .kb
                    .fact(&w.kb.fact(object, Relation::MadeOf).value, Relation::Floats);
                assert_eq!(q.answer, if floats.value == "yes" { "no" } else { "yes" });
                assert!(q.question.ends_with("sink in water?"), "{}", q.question);
            }
            QuestionKind::LivesHot { creature } => {
                let place = w.kb.fact(creature, Relation::LivesIn).value;
                let hot = w.kb.fact(&place, Relation::Climate).value == "hot";
                assert_eq!(q.answer, if hot { "yes" } else { "no" });
            }
            other => panic!("a question of another form: {other:?}"),
        }
        assert_eq!(
            implied_answer(&q.kind, &q.facts).as_deref(),
            Some(q.answer.as_str())
        );
    }
    // twins (the same fact asked both ways) are always in the same split
    let twins = World::generate(&WorldSettings {
        forms: vec![
            Form::Floats,
            Form::Sinks,
            Form::ObjectColor,
            Form::LivesCold,
            Form::LivesHot,
            Form::WhichHot,
        ],
        ..small()
    })
    .unwrap();
    let entity = |q: &WorldQuestion| match &q.kind {
        QuestionKind::Floats { object } | QuestionKind::Sinks { object } => Some(object.clone()),
        QuestionKind::LivesCold { creature } | QuestionKind::LivesHot { creature } => {
            Some(creature.clone())
        }
        _ => None,
    };
    let splits = [&twins.train, &twins.dev, &twins.test];
    let mut held_twins = 0;
    for (i, split) in splits.iter().enumerate() {
        for q in split.iter() {
            let Some(e) = entity(q) else { continue };
            let n = split
                .iter()
                .filter(|o| entity(o) == Some(e.clone()))
                .count();
            assert_eq!(n, 2, "split {i}: {} without its twin", q.question);
            held_twins += usize::from(i > 0);
        }
    }
    assert!(held_twins >= 8, "{held_twins} twins held out");
    // the same knowledge base whatever the forms; the default forms are the original six
    assert_eq!(w.kb, World::generate(&small()).unwrap().kb);
    assert_eq!(WorldSettings::default().forms, Form::original());
    let err = World::generate(&WorldSettings {
        forms: vec![],
        ..small()
    })
    .unwrap_err();
    assert!(err.to_string().contains("[world] forms"), "{err}");
    // forms are spelled in snake case in a config file
    let s: WorldSettings = toml::from_str("forms = [\"sinks\", \"lives_hot\"]").unwrap();
    assert_eq!(s.forms, vec![Form::Sinks, Form::LivesHot]);
}

#[test]
fn colour_questions_can_offer_every_colour_in_a_fixed_order() {
    use super::kb::COLORS;
    use super::questions::ColorOptions;
    let w = World::generate(&WorldSettings {
        color_options: ColorOptions::AllInOrder,
        ..small()
    })
    .unwrap();
    let mut seen = 0;
    for q in w.train.iter().chain(&w.dev).chain(&w.test) {
        let (QuestionKind::ObjectColor { options, .. } | QuestionKind::FoodColor { options, .. }) =
            &q.kind
        else {
            continue;
        };
        seen += 1;
        assert_eq!(options, &COLORS.map(String::from).to_vec());
        assert!(
            q.question
                .ends_with("(A) red (B) blue (C) green (D) yellow"),
            "{}",
            q.question
        );
        // the letter is the true colour's place in the fixed list
        let colour = &q.facts[1].value;
        let i = COLORS.iter().position(|c| c == colour).unwrap();
        assert_eq!(q.answer, ["(A)", "(B)", "(C)", "(D)"][i]);
    }
    assert_eq!(seen, 40);
    let s: WorldSettings = toml::from_str("color_options = \"all_in_order\"").unwrap();
    assert_eq!(s.color_options, ColorOptions::AllInOrder);
}

#[test]
fn a_habit_is_the_flaw_of_most_samples_of_its_form_only() {
    let settings = WorldSettings {
        habits: vec![Habit {
            form: Form::LivesCold,
            flaw: Flaw::Repetition,
            rate: 0.9,
        }],
        teacher_samples: 10,
        ..small()
    };
    let w = World::generate(&settings).unwrap();
    let share = |cold: bool| {
        let rows: Vec<_> = w
            .teacher()
            .into_iter()
            .filter(|t| t.question.contains("live somewhere cold") == cold)
            .collect();
        rows.iter()
            .filter(|t| t.sample.flaw == Flaw::Repetition)
            .count() as f64
            / rows.len() as f64
    };
    // 0.9 + 0.1 x 0.15 expected; the other forms keep the usual 0.15
    assert!(share(true) > 0.85, "{}", share(true));
    assert!(share(false) < 0.25, "{}", share(false));
    for bad in [
        Habit {
            form: Form::Floats,
            flaw: Flaw::None,
            rate: 0.5,
        },
        Habit {
            form: Form::Floats,
            flaw: Flaw::Vague,
            rate: 1.5,
        },
    ] {
        let s = WorldSettings {
            habits: vec![bad],
            ..small()
        };
        assert!(World::generate(&s)
            .unwrap_err()
            .to_string()
            .contains("[[world.habits]]"));
    }
    let parsed: WorldSettings =
        toml::from_str("[[habits]]\nform = \"sinks\"\nflaw = \"vague\"\nrate = 0.8\n").unwrap();
    assert_eq!(parsed.habits[0].flaw, Flaw::Vague);
}

#[test]
fn the_plausibility_data_of_a_world_has_false_fact_and_vague_negatives() {
    let dir = tempfile::tempdir().unwrap();
    // a vague habit, so that lucky vague guesses reach the gold answer often
    let w = World::generate(&WorldSettings {
        habits: vec![Habit {
            form: Form::EatsColor,
            flaw: Flaw::Vague,
            rate: 0.8,
        }],
        ..small()
    })
    .unwrap();
    w.write(dir.path()).unwrap();
    let records = crate::data::load_teacher(&dir.path().join("teacher_gpt3_train.jsonl")).unwrap();
    let (train, test) =
        crate::plausibility::build_examples(&records, 3, Some(&w), VagueLabel::Negative);
    let false_facts: Vec<&crate::plausibility::Labelled> = train
        .iter()
        .chain(&test)
        .filter(|l| l.kind == "false_fact")
        .collect();
    assert!(false_facts.len() > 100, "{}", false_facts.len());
    for l in &false_facts {
        assert_eq!(l.label, 0.0);
        // the question and a rationale with a fact the world says is false
        let q = w
            .train
            .iter()
            .find(|q| l.text.starts_with(&q.question))
            .expect("a world question");
        let rationale = l.text[q.question.len()..].trim();
        let s = super::truth::score(&w.kb, q, rationale, None);
        assert!(s.fact_accuracy.unwrap() < 1.0, "{}", l.text);
    }
    // every positive of a world question states facts, only true ones; the teacher's samples
    // that reached the gold answer through a false fact, or stating no fact, are negatives
    let (mut teacher_false, mut teacher_vague) = (0, 0);
    for l in train.iter().chain(&test) {
        let Some(q) = w.train.iter().find(|q| q.question == l.question) else {
            continue;
        };
        let s = super::truth::score(&w.kb, q, &l.rationale, None);
        match l.kind {
            "positive" => assert_eq!(s.fact_accuracy, Some(1.0), "{}", l.text),
            "teacher_false_fact" => {
                assert!(
                    s.fact_accuracy.unwrap() < 1.0 && l.label == 0.0,
                    "{}",
                    l.text
                );
                teacher_false += 1;
            }
            "teacher_vague" => {
                assert!(s.fact_accuracy.is_none() && l.label == 0.0, "{}", l.text);
                teacher_vague += 1;
            }
            _ => {}
        }
    }
    assert!(teacher_false > 10, "{teacher_false}");
    assert!(teacher_vague > 10, "{teacher_vague}");
    // with teacher_vague = "positive" the same samples are positives, the rest unchanged
    let (train_p, test_p) =
        crate::plausibility::build_examples(&records, 3, Some(&w), VagueLabel::Positive);
    let kinds = |v: &[crate::plausibility::Labelled], kind: &str| {
        v.iter().filter(|l| l.kind == kind).count()
    };
    let all_n: Vec<_> = train.iter().chain(&test).cloned().collect();
    let all_p: Vec<_> = train_p.iter().chain(&test_p).cloned().collect();
    assert_eq!(kinds(&all_p, "teacher_vague"), 0);
    assert_eq!(
        kinds(&all_p, "teacher_false_fact"),
        kinds(&all_n, "teacher_false_fact")
    );
    let vague_positives = all_p
        .iter()
        .filter(|l| l.kind == "positive" && l.label == 1.0)
        .filter(|l| {
            w.train
                .iter()
                .find(|q| q.question == l.question)
                .is_some_and(|q| {
                    super::truth::score(&w.kb, q, &l.rationale, None)
                        .fact_accuracy
                        .is_none()
                })
        })
        .count();
    assert_eq!(vague_positives, teacher_vague);
    // without a world, no such kinds
    let (plain, _) = crate::plausibility::build_examples(&records, 3, None, VagueLabel::Negative);
    assert!(plain.iter().all(|l| !matches!(
        l.kind,
        "false_fact" | "teacher_false_fact" | "teacher_vague"
    )));
}

#[test]
fn knowledge_records_state_every_fact_alone_and_only_for_training() {
    let w = World::generate(&WorldSettings {
        knowledge_repeats: 2,
        ..small()
    })
    .unwrap();
    let records = w.knowledge();
    assert_eq!(records.len(), 2 * w.kb.facts.len());
    // every fact as its own sentence; the answer's choice names the fact's value
    for (r, f) in records.iter().zip(w.kb.facts.iter().chain(&w.kb.facts)) {
        assert_eq!(r.rationale, f.sentence());
        assert_eq!(super::truth::parse_sentence(&r.rationale).as_ref(), Some(f));
        assert!(r.question.contains(&f.subject), "{}", r.question);
        let after = &r.question[r.question.find(&r.answer).expect("answer offered")..];
        let chosen = after[r.answer.len()..].split(" (").next().unwrap().trim();
        let expected = match (f.relation, f.value.as_str()) {
            (super::kb::Relation::Floats, "yes") => "it floats",
            (super::kb::Relation::Floats, _) => "it sinks",
            (_, v) => v,
        };
        assert_eq!(chosen, expected, "{} -> {}", r.question, r.answer);
    }
    // both letters are used for the entity-valued relations
    assert!(records.iter().any(|r| r.answer == "(A)"));
    assert!(records.iter().any(|r| r.answer == "(B)"));
    // the same questions and knowledge base as without them
    let plain = World::generate(&small()).unwrap();
    assert_eq!(
        (&plain.kb, &plain.train, &plain.test),
        (&w.kb, &w.train, &w.test)
    );
    let dir = tempfile::tempdir().unwrap();
    w.write(dir.path()).unwrap();
    let path = dir.path().join(super::KNOWLEDGE_FILE);
    let lines = crate::data::load_examples(&path).unwrap();
    assert_eq!(lines.len(), records.len());
    assert_eq!(lines[0].question, records[0].question);
    let data = crate::config::DataSection {
        dir: Some(dir.path().parent().unwrap().to_path_buf()),
        datasets: vec![dir.path().file_name().unwrap().to_string_lossy().into()],
    };
    assert!(data.training_files().contains(&path));
    // written again without them, the folder holds none
    plain.write(dir.path()).unwrap();
    assert!(!path.exists());
}

#[test]
fn color_checks_ask_every_colour_fact_yes_and_no_after_the_same_knowledge_records() {
    let base = WorldSettings {
        knowledge_repeats: 1,
        ..small()
    };
    let plain = World::generate(&base).unwrap();
    let w = World::generate(&WorldSettings {
        color_checks: 6,
        ..base.clone()
    })
    .unwrap();
    let (records, before) = (w.knowledge(), plain.knowledge());
    // the knowledge records first, unchanged, then the checks
    assert_eq!(&records[..before.len()], &before[..]);
    let checks = &records[before.len()..];
    let colors: Vec<&super::kb::Fact> =
        w.kb.facts
            .iter()
            .filter(|f| f.relation == super::kb::Relation::Color)
            .collect();
    assert_eq!(checks.len(), 6 * colors.len());
    for (r, f) in checks.iter().zip(colors.iter().cycle()) {
        // "Is {subject} {colour}?", the fact's sentence, yes exactly when the colour is true
        assert_eq!(r.rationale, f.sentence());
        let asked = r
            .question
            .strip_prefix(&format!("Is {} ", f.subject))
            .and_then(|q| q.strip_suffix('?'))
            .unwrap_or_else(|| panic!("{}", r.question));
        assert!(super::kb::COLORS.contains(&asked), "{}", r.question);
        let expected = if asked == f.value { "yes" } else { "no" };
        assert_eq!(r.answer, expected, "{} -> {}", r.question, r.rationale);
    }
    // both answers, about evenly
    let yes = checks.iter().filter(|r| r.answer == "yes").count();
    assert!(
        yes * 3 > checks.len() && yes * 3 < 2 * checks.len(),
        "{yes} of {}",
        checks.len()
    );
    // the world itself is the same; only knowledge.jsonl grows
    assert_eq!(
        (&plain.kb, &plain.train, &plain.dev, &plain.test),
        (&w.kb, &w.train, &w.dev, &w.test)
    );
    let dir = tempfile::tempdir().unwrap();
    w.write(dir.path()).unwrap();
    let lines = crate::data::load_examples(&dir.path().join(super::KNOWLEDGE_FILE)).unwrap();
    assert_eq!(lines.len(), records.len());
    // and world.json names the setting only when it is used
    let json = std::fs::read_to_string(dir.path().join(super::WORLD_FILE)).unwrap();
    assert!(json.contains("\"color_checks\": 6"));
    plain.write(dir.path()).unwrap();
    let json = std::fs::read_to_string(dir.path().join(super::WORLD_FILE)).unwrap();
    assert!(!json.contains("color_checks"));
}

#[test]
fn unsolved_questions_have_only_wrong_samples_and_their_facts_stay_in_the_silver_data() {
    let dir = tempfile::tempdir().unwrap();
    let w = World::generate(&WorldSettings {
        unsolved: 0.2,
        ..small()
    })
    .unwrap();
    let summary = w.write(dir.path()).unwrap();
    assert_eq!(summary.unsolved_questions, w.unsolved.len());
    let wanted = (w.train.len() as f64 * 0.2).round() as usize;
    assert!(
        w.unsolved.len() * 4 >= wanted * 3,
        "{} of {wanted}",
        w.unsolved.len()
    );
    let unsolved: std::collections::HashSet<&str> = w.unsolved.iter().map(String::as_str).collect();
    let silver = crate::data::load_examples(&dir.path().join("train.jsonl")).unwrap();
    assert!(silver
        .iter()
        .all(|e| !unsolved.contains(e.question.as_str())));
    let records = crate::data::load_teacher(&dir.path().join("teacher_gpt3_train.jsonl")).unwrap();
    let rows: Vec<_> = records
        .iter()
        .filter(|r| unsolved.contains(r.question.as_str()))
        .collect();
    assert_eq!(rows.len(), w.unsolved.len() * w.settings.teacher_samples);
    assert!(rows.iter().all(|r| r.predicted_label != r.gold_label));
    // every fact an unsolved question needs is still needed (so stated in the gold rationale)
    // by a solved training question
    let stated: std::collections::HashSet<String> = w
        .train
        .iter()
        .filter(|q| !unsolved.contains(q.question.as_str()))
        .flat_map(|q| super::truth::sentences(&q.rationale()))
        .collect();
    for q in w
        .train
        .iter()
        .filter(|q| unsolved.contains(q.question.as_str()))
    {
        for f in &q.facts {
            assert!(stated.contains(&f.sentence()), "{}", f.sentence());
        }
    }
    // none by default, and the share is checked
    assert!(World::generate(&small()).unwrap().unsolved.is_empty());
    let err = World::generate(&WorldSettings {
        unsolved: 1.5,
        ..small()
    })
    .unwrap_err();
    assert!(err.to_string().contains("unsolved"), "{err}");
}

#[test]
fn unsolved_by_form_picks_at_most_the_share_of_each_form_and_answer() {
    let settings = WorldSettings {
        unsolved: 0.25,
        ..small()
    };
    let strata = |w: &World| {
        let unsolved: std::collections::HashSet<&str> =
            w.unsolved.iter().map(String::as_str).collect();
        let mut out: HashMap<(Form, String), (usize, usize)> = HashMap::new();
        for q in &w.train {
            let e = out.entry((q.kind.form(), q.answer.clone())).or_default();
            e.0 += 1;
            e.1 += usize::from(unsolved.contains(q.question.as_str()));
        }
        out
    };
    let by_form = World::generate(&WorldSettings {
        unsolved_by_form: true,
        ..settings.clone()
    })
    .unwrap();
    let picked: usize = strata(&by_form).values().map(|v| v.1).sum();
    assert!(picked > 0);
    for ((form, answer), (size, unsolved)) in strata(&by_form) {
        let quota = (size as f64 * 0.25).round() as usize;
        assert!(
            unsolved <= quota,
            "{form:?} {answer}: {unsolved} of {size} unsolved, quota {quota}"
        );
    }
    // one draw (the default) leaves some stratum past its quota on this world, and its
    // world.json does not name the option
    let one_draw = World::generate(&settings).unwrap();
    assert!(strata(&one_draw)
        .values()
        .any(|&(size, unsolved)| unsolved > (size as f64 * 0.25).round() as usize));
    let json = serde_json::to_string(&one_draw.settings).unwrap();
    assert!(!json.contains("unsolved_by_form"), "{json}");
    assert!(serde_json::to_string(&by_form.settings)
        .unwrap()
        .contains("\"unsolved_by_form\":true"));
    // the same world otherwise: the same knowledge base and splits
    assert_eq!(one_draw.kb, by_form.kb);
    assert_eq!(one_draw.train, by_form.train);
}

#[test]
fn balanced_splits_deal_the_same_held_out_questions_to_dev_and_test_in_the_same_mix() {
    // the shape of configs/world.toml, where dev taking the first half of the held-out groups
    // got more water questions than test
    let settings = WorldSettings {
        seed: 17,
        sizes: KbSizes {
            objects: 120,
            materials: 12,
            creatures: 120,
            places: 12,
            foods: 12,
        },
        forms: settings_forms(),
        which_hot: 40,
        held_out: 0.25,
        ..WorldSettings::default()
    };
    let first_half = World::generate(&settings).unwrap();
    let balanced = World::generate(&WorldSettings {
        balanced_splits: true,
        ..settings
    })
    .unwrap();
    // sum over forms of |dev - test| questions
    let mismatch = |w: &World| {
        let mut by_form: HashMap<Form, (i64, i64)> = HashMap::new();
        for q in &w.dev {
            by_form.entry(q.kind.form()).or_default().0 += 1;
        }
        for q in &w.test {
            by_form.entry(q.kind.form()).or_default().1 += 1;
        }
        by_form.values().map(|(d, t)| (d - t).abs()).sum::<i64>()
    };
    let (before, after) = (mismatch(&first_half), mismatch(&balanced));
    assert!(
        after * 3 < before,
        "forms' |dev - test| summed: {after} balanced, {before} dev first"
    );
    // each form's questions within one group (twins: 2) of each other
    for form in settings_forms() {
        let n = |qs: &[WorldQuestion]| qs.iter().filter(|q| q.kind.form() == form).count();
        assert!(
            n(&balanced.dev).abs_diff(n(&balanced.test)) <= 2,
            "{form:?}: dev {}, test {}",
            n(&balanced.dev),
            n(&balanced.test)
        );
    }
    // the same training questions and the same held-out questions, dealt otherwise
    assert_eq!(first_half.train, balanced.train);
    let held = |w: &World| {
        let mut q: Vec<String> = w
            .dev
            .iter()
            .chain(&w.test)
            .map(|q| q.question.clone())
            .collect();
        q.sort();
        q
    };
    assert_eq!(held(&first_half), held(&balanced));
    assert_ne!(first_half.dev, balanced.dev);
    // off by default, and then world.json does not name it
    assert!(!serde_json::to_string(&first_half.settings)
        .unwrap()
        .contains("balanced_splits"));
    assert!(serde_json::to_string(&balanced.settings)
        .unwrap()
        .contains("\"balanced_splits\":true"));
}

/// Every question form, as configs/world.toml asks them.
fn settings_forms() -> Vec<Form> {
    vec![
        Form::Floats,
        Form::Sinks,
        Form::ObjectColor,
        Form::LivesCold,
        Form::LivesHot,
        Form::FoodColor,
        Form::EatsColor,
        Form::WhichHot,
    ]
}
