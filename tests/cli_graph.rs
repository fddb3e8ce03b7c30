//! `spillway graph`: the pipeline as Mermaid or DOT.

mod common;

#[test]
fn graph_prints_every_component_and_edge() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::write_pipeline(
        dir.path(),
        "sources:\n  flows: { type: netflow, listen: \"127.0.0.1:2055\" }\ntransforms:\n  web: { type: filter, inputs: [flows], condition: \"dst_port == 443\" }\nsinks:\n  out: { type: blackhole, inputs: [web] }\n  gaps: { type: blackhole, inputs: [flows.loss] }\n",
    );
    let mermaid = common::spillway().arg("graph").arg(&p).output().unwrap();
    let text = String::from_utf8(mermaid.stdout).unwrap();
    assert!(mermaid.status.success());
    for needle in [
        "flowchart LR",
        "flows([\"flows<br/>netflow\"])",
        "web --> out",
        "flows --> web",
        "flows -- loss --> gaps",
    ] {
        assert!(text.contains(needle), "{needle} in\n{text}");
    }
    let dot = common::spillway().args(["graph", "--format", "dot"]).arg(&p).output().unwrap();
    let text = String::from_utf8(dot.stdout).unwrap();
    assert!(
        text.starts_with("digraph pipeline {") && text.contains("flows -> gaps [label=\"loss\"];"),
        "{text}"
    );
}
