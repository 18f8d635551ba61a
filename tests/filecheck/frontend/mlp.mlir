// RUN: cimc lower %S/Inputs/mlp.onnx | filecheck %s
// A symbolic batch ('?'), opset 16, three Linear layers (w8/a2, w4/a6, w6/a8) with GELU
// exported as its erf form.

// CHECK:      func.func @main(%{{.*}}: tensor<?x{{.*}}xf32>
// CHECK:      cimq.quantize {{.*}} -> tensor<?x{{.*}}x!cimq.q<s2:{{.*}}>>
// CHECK:      cimq.matmul {{.*}} {layer = "/layers.0/MatMul"} : (tensor<?x{{.*}}x!cimq.q<s2:{{.*}}>>, tensor<{{.*}}x!cimq.q<s8n:{{.*}}>>)
// CHECK:      cimq.erf
// CHECK:      cimq.quantize {{.*}} -> tensor<?x{{.*}}x!cimq.q<s6:{{.*}}>>
// CHECK:      cimq.matmul {{.*}} {layer = "/layers.1/MatMul"} : (tensor<?x{{.*}}x!cimq.q<s6:{{.*}}>>, tensor<{{.*}}x!cimq.q<s4n:{{.*}}>>)
// 8-bit activations have no Clip in the export: the Q output is the integer tensor.
// CHECK:      cimq.quantize {{.*}}src = "{{.*}}QuantizeLinear_output_0"{{.*}} -> tensor<?x{{.*}}x!cimq.q<s8:{{.*}}>>
// CHECK:      cimq.matmul {{.*}} : (tensor<?x{{.*}}x!cimq.q<s8:{{.*}}>>, tensor<{{.*}}x!cimq.q<s6n:{{.*}}>>)
