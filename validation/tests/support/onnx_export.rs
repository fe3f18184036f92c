//! Writes a [`SoftmaxRegression`] as an ONNX model with tract-onnx's own
//! protobuf types: the real file format, built without any Python. Test and
//! example support only, not part of the crate's API.

use mithridate_core::model::SoftmaxRegression;
use prost::Message as _;
use tract_onnx::pb;

const FLOAT: i32 = 1;

fn tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: FLOAT,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => Value::DimValue(*v),
                                None => Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i: v,
        ..Default::default()
    }
}

/// The bytes of an ONNX file computing `m`: `softmax(((x - mean) / scale) W + b)`.
/// `image`: take `[N, 1, h, w]` inputs (flattened first) instead of `[N, d]`.
/// `probabilities`: end with a Softmax node (else the output is logits).
pub fn softmax_regression_onnx(
    m: &SoftmaxRegression,
    image: Option<(i64, i64)>,
    probabilities: bool,
) -> Vec<u8> {
    let (d, k) = m.weights.dim();
    let mut nodes = Vec::new();
    let input_dims: Vec<Option<i64>> = match image {
        Some((h, w)) => vec![None, Some(1), Some(h), Some(w)],
        None => vec![None, Some(d as i64)],
    };
    let mut x = "x";
    if image.is_some() {
        nodes.push(node("Flatten", &["x"], "flat", vec![int_attr("axis", 1)]));
        x = "flat";
    }
    nodes.push(node("Sub", &[x, "mean"], "centred", vec![]));
    nodes.push(node("Mul", &["centred", "inv_scale"], "scaled", vec![]));
    nodes.push(node("MatMul", &["scaled", "weights"], "mm", vec![]));
    let last = if probabilities { "logits" } else { "y" };
    nodes.push(node("Add", &["mm", "bias"], last, vec![]));
    if probabilities {
        nodes.push(node("Softmax", &["logits"], "y", vec![int_attr("axis", 1)]));
    }
    let graph = pb::GraphProto {
        name: "softmax_regression".into(),
        node: nodes,
        initializer: vec![
            tensor("mean", &[d as i64], m.scaler.mean.as_slice().unwrap_or(&[])),
            tensor("inv_scale", &[1], &[1.0 / m.scaler.scale]),
            tensor(
                "weights",
                &[d as i64, k as i64],
                &m.weights.iter().copied().collect::<Vec<_>>(),
            ),
            tensor("bias", &[k as i64], &m.bias.to_vec()),
        ],
        input: vec![value_info("x", &input_dims)],
        output: vec![value_info("y", &[None, Some(k as i64)])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "mithridate-tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}
