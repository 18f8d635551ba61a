// RUN: cimc lower %S/Inputs/conv.onnx | filecheck %s
// RUN: cimc lower %S/Inputs/conv.onnx --generic | cimc-opt | filecheck %s
// Brevitas export at opset 13 with export_weight_q_node=True: float weights -> Q -> Clip -> DQ.
// The first layer: signed 4-bit input, 2-bit narrow weights; the head: 3-bit unsigned input,
// 3-bit narrow weights with a bias-free Linear (Transpose + MatMul folded into the weight).

// CHECK:      func.func @main(%{{.*}}: tensor<1x3x9x9xf32> {cimq.name = "x"})
// CHECK:      %[[X:.*]] = cimq.quantize %{{.*}} {src = "{{.*}}Clip_output_0"} : (tensor<1x3x9x9xf32>) -> tensor<1x3x9x9x!cimq.q<s4:0.125>>
// CHECK:      %[[W:.*]] = cimq.const dense<{{.*}}> : tensor<2x3x1x1xi8> : tensor<2x3x1x1x!cimq.q<s2n:{{.*}}>>
// CHECK:      cimq.conv %[[X]], %[[W]] {strides = array<i64: 2, 2>, pads = array<i64: 2, 2, 2, 2>, dilations = array<i64: 1, 1>, group = 1 : i64, layer = "/layers.0/Conv"}
// CHECK-SAME: -> tensor<1x2x7x7x!cimq.q<s32:{{.*}}>>
// CHECK:      cimq.dequantize
// CHECK:      cimq.add
// CHECK:      cimq.relu
// CHECK:      cimq.flatten %{{.*}} {axis = 1 : i64}
// CHECK:      cimq.quantize %{{.*}} -> tensor<1x98x!cimq.q<u3:{{.*}}>>
// CHECK:      cimq.const #cimq.blob<"head.weight", "{{[0-9a-f]+}}"> : tensor<98x4x!cimq.q<s3n:{{.*}}>>
// CHECK:      cimq.matmul %{{.*}}, %{{.*}} {layer = "/head/MatMul"}
// CHECK-NOT:  cimq.transpose
// CHECK:      func.return
