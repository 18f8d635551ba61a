// RUN: cimc lower %S/Inputs/attention.onnx | filecheck %s
// q/k/v projections, Q @ K^T with K transposed on the integers, softmax, an unsigned 2-bit
// probability quantizer, A @ V, output projection.

// CHECK-COUNT-3: cimq.matmul %{{.*}}, %{{.*}} {layer = "/{{q|k|v}}/MatMul"}
// CHECK:      %[[KT:.*]] = cimq.transpose %{{.*}} {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x2x4x!cimq.q<s5:{{.*}}>>) -> tensor<1x2x4x2x!cimq.q<s5:{{.*}}>>
// CHECK:      cimq.matmul_act %{{.*}}, %[[KT]] {layer = "/MatMul"}
// CHECK:      cimq.softmax %{{.*}} {axis = 3 : i64}
// CHECK:      cimq.quantize {{.*}} -> tensor<1x2x2x2x!cimq.q<u2:{{.*}}>>
// CHECK:      cimq.matmul_act %{{.*}}, %{{.*}} {layer = "/MatMul_1"} : (tensor<1x2x2x2x!cimq.q<u2:{{.*}}>>, tensor<1x2x2x4x!cimq.q<s4:{{.*}}>>)
// CHECK:      cimq.matmul %{{.*}}, %{{.*}} {layer = "/proj/MatMul"}
