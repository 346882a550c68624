//! The sans-IO protocol core: Engine.IO v4, Socket.IO v5 and the chat events.
//!
//! No sockets, no tokio, no clock: time and randomness are passed in by the caller, so the server,
//! the client and the load tester all drive the same code, and tests run with a fake clock.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod chat;
pub mod engineio;
pub mod json;
pub mod socketio;

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod snapshot_tests {
    use super::{engineio, socketio};

    /// One line per frame: the frame, the Engine.IO summary, and for messages the Socket.IO one.
    fn render(frames: &[&str]) -> String {
        let mut out = String::new();
        for frame in frames {
            let mut line = String::new();
            super::json::push_one_line(&mut line, frame, 200);
            line.push_str("\n    eio: ");
            match engineio::PacketRef::parse_text(frame) {
                Ok(p) => {
                    line.push_str(&p.summary());
                    if let engineio::PacketRef::Message(t) = p {
                        line.push_str("\n    sio: ");
                        match socketio::PacketRef::parse(t) {
                            Ok(s) => line.push_str(&s.summary()),
                            Err(e) => line.push_str(&format!("error: {e}")),
                        }
                    }
                }
                Err(e) => line.push_str(&format!("error: {e}")),
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn summaries_of_the_protocol_wire_examples() {
        let frames = [
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
            "2",
            "3",
            "2probe",
            "3probe",
            "5",
            "6",
            "1",
            "4hello",
            "bAQIDBA==",
            "40",
            r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#,
            r#"40{"token":"123"}"#,
            "40/admin,",
            r#"40/admin,{"token":"abc"}"#,
            r#"40/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}"#,
            r#"44{"message":"Not authorized"}"#,
            "40/random",
            r#"44/random,{"message":"Invalid namespace"}"#,
            r#"42["foo"]"#,
            r#"42/admin,["bar"]"#,
            r#"42["message",1,"2",{"3":[true]}]"#,
            r#"42456["message-with-ack",1,"2"]"#,
            r#"43456[1,"2"]"#,
            r#"43/admin,13["bar"]"#,
            r#"451-["baz",{"_placeholder":true,"num":0}]"#,
            r#"452-789["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            r#"461-15["bar",{"_placeholder":true,"num":0}]"#,
            "41",
            "41/admin,",
            r#"42["send_message",{"room":"1","author":"Celular","message":"Olá mundo!","time":"16:10"}]"#,
            r#"42["join_room","1"]"#,
            "abc",
            r#"42abc["x"]"#,
            r#"42["connect"]"#,
            r#"4511-["x"]"#,
        ];
        let text = render(&frames);
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!("proto_summaries_wire_examples", text);
        });
    }
}
