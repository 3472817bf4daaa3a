//! Renders a workflow as a Mermaid flowchart or a Graphviz digraph, so
//! operators can look at a process instead of reading it.

use std::fmt::Write;

use super::model::{StepKind, Workflow};

/// A Mermaid `flowchart`; each step's shape shows its kind.
pub fn mermaid(workflow: &Workflow) -> String {
    let mut out = String::from("flowchart TD\n");
    for step in &workflow.steps {
        let label = escape_mermaid(&label(step.title.as_deref(), &step.id, &step.kind));
        let (open, close) = match step.kind {
            StepKind::Task(_) => ("[", "]"),
            StepKind::Wait(_) => ("([", "])"),
            StepKind::Notify(_) => ("[/", "/]"),
            StepKind::Deadline(_) => ("{{", "}}"),
            StepKind::Branch(_) => ("{", "}"),
            StepKind::End(_) => ("(((", ")))"),
        };
        let _ = writeln!(out, "    {}{open}\"{label}\"{close}", step.id);
    }
    for step in &workflow.steps {
        for (edge, target) in step.transitions() {
            let arrow = if edge == "expired" { "-.->" } else { "-->" };
            let _ = writeln!(
                out,
                "    {} {arrow}|\"{}\"| {}",
                step.id,
                escape_mermaid(&edge),
                target
            );
        }
    }
    out
}

/// A Graphviz `digraph`.
pub fn dot(workflow: &Workflow) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n    rankdir=TB;\n",
        escape_dot(&workflow.name)
    );
    for step in &workflow.steps {
        let shape = match step.kind {
            StepKind::Task(_) => "box",
            StepKind::Wait(_) => "ellipse",
            StepKind::Notify(_) => "parallelogram",
            StepKind::Deadline(_) => "hexagon",
            StepKind::Branch(_) => "diamond",
            StepKind::End(_) => "doublecircle",
        };
        let label = label(step.title.as_deref(), &step.id, &step.kind);
        let _ = writeln!(
            out,
            "    \"{}\" [shape={shape}, label=\"{}\"];",
            step.id,
            escape_dot(&label)
        );
    }
    for step in &workflow.steps {
        for (edge, target) in step.transitions() {
            let style = if edge == "expired" {
                ", style=dashed"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\" [label=\"{}\"{style}];",
                step.id,
                target,
                escape_dot(&edge)
            );
        }
    }
    out.push_str("}\n");
    out
}

fn label(title: Option<&str>, id: &str, kind: &StepKind) -> String {
    let detail = match kind {
        StepKind::Task(t) => t.handler.clone(),
        StepKind::Wait(_) => "wait".to_owned(),
        StepKind::Notify(n) => format!("notify by {}", n.message.channel.name()),
        StepKind::Deadline(d) => format!("deadline: {}", d.limit),
        StepKind::Branch(_) => "branch".to_owned(),
        StepKind::End(e) => format!("end: {}", e.outcome),
    };
    format!("{}\n{detail}", title.unwrap_or(id))
}

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', "<br/>")
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
