// RUN: cimc-opt %s | filecheck %s
// RUN: cimc-opt %s | cimc-opt | filecheck %s
// RUN: cimc-opt %s --print-op-generic | cimc-opt | filecheck %s

// CHECK-LABEL: func.func @conv_layer
func.func @conv_layer(%x: tensor<?x1x8x8xf32>) -> tensor<?x4x4x4xf32> {
  // CHECK: %[[Q:.*]] = cimq.quantize %{{.*}} : (tensor<?x1x8x8xf32>) -> tensor<?x1x8x8x!cimq.q<s8:0.0212>>
  %q = cimq.quantize %x : (tensor<?x1x8x8xf32>) -> tensor<?x1x8x8x!cimq.q<s8:0.0212>>
  // CHECK: cimq.const #cimq.blob<"c1.weight", "00112233445566778899"> : tensor<4x1x3x3x!cimq.q<s2n:0.318>>
  %w = cimq.const #cimq.blob<"c1.weight", "00112233445566778899"> : tensor<4x1x3x3x!cimq.q<s2n:0.318>>
  // CHECK: cimq.conv %[[Q]], %{{.*}} {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, layer = "c1"}
  %a = cimq.conv %q, %w {strides = array<i64: 2, 2>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 1 : i64, layer = "c1"} : (tensor<?x1x8x8x!cimq.q<s8:0.0212>>, tensor<4x1x3x3x!cimq.q<s2n:0.318>>) -> tensor<?x4x4x4x!cimq.q<s32:0.0067416>>
  // CHECK: cimq.bias_add
  %b = cimq.const dense<[1, -2, 3, 0]> : tensor<4xi32> : tensor<4x!cimq.q<s32:0.0067416>>
  %ab = cimq.bias_add %a, %b {axis = 1 : i64} : (tensor<?x4x4x4x!cimq.q<s32:0.0067416>>, tensor<4x!cimq.q<s32:0.0067416>>) -> tensor<?x4x4x4x!cimq.q<s32:0.0067416>>
  // CHECK: cimq.requantize %{{.*}} {clamp_min = 0.000000e+00 : f64} : ({{.*}}) -> tensor<?x4x4x4x!cimq.q<u4:0.135>>
  %r = cimq.requantize %ab {clamp_min = 0.0 : f64} : (tensor<?x4x4x4x!cimq.q<s32:0.0067416>>) -> tensor<?x4x4x4x!cimq.q<u4:0.135>>
  // CHECK: cimq.maxpool
  %p = cimq.maxpool %r {kernel = array<i64: 1, 1>, strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>} : (tensor<?x4x4x4x!cimq.q<u4:0.135>>) -> tensor<?x4x4x4x!cimq.q<u4:0.135>>
  %f = cimq.dequantize %p : (tensor<?x4x4x4x!cimq.q<u4:0.135>>) -> tensor<?x4x4x4xf32>
  func.return %f : tensor<?x4x4x4xf32>
}

// CHECK-LABEL: func.func @per_channel_linear
func.func @per_channel_linear(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<s6:0.5:zp=0>>
  // CHECK: tensor<4x2x!cimq.q<s4n:axis1[0.25, 1.0e-05]>>
  %w = cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8> : tensor<4x2x!cimq.q<s4n:axis1[0.25, 1.0e-05]>>
  // CHECK: cimq.matmul %{{.*}}, %{{.*}} {layer = "fc"} : {{.*}} -> tensor<1x2x!cimq.q<s32:axis1[0.125, 5.0e-06]>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x4x!cimq.q<s6:0.5>>, tensor<4x2x!cimq.q<s4n:axis1[0.25, 1.0e-05]>>) -> tensor<1x2x!cimq.q<s32:axis1[0.125, 5.0e-06]>>
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:axis1[0.125, 5.0e-06]>>) -> tensor<1x2xf32>
  // CHECK: cimq.gelu
  %g = cimq.gelu %f : (tensor<1x2xf32>) -> tensor<1x2xf32>
  // CHECK: cimq.softmax %{{.*}} {axis = -1 : i64}
  %s = cimq.softmax %g {axis = -1 : i64} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  func.return %s : tensor<1x2xf32>
}

// CHECK-LABEL: func.func @attention
func.func @attention(%q: tensor<1x2x5x8x!cimq.q<s8:0.1>>, %k: tensor<1x2x5x8x!cimq.q<s5:0.2>>) -> tensor<1x2x5x5x!cimq.q<s32:0.02>> {
  // CHECK: cimq.transpose %{{.*}} {perm = array<i64: 0, 1, 3, 2>}
  %kt = cimq.transpose %k {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x5x8x!cimq.q<s5:0.2>>) -> tensor<1x2x8x5x!cimq.q<s5:0.2>>
  // CHECK: cimq.matmul_act
  %s = cimq.matmul_act %q, %kt {layer = "qk"} : (tensor<1x2x5x8x!cimq.q<s8:0.1>>, tensor<1x2x8x5x!cimq.q<s5:0.2>>) -> tensor<1x2x5x5x!cimq.q<s32:0.02>>
  func.return %s : tensor<1x2x5x5x!cimq.q<s32:0.02>>
}

// CHECK-LABEL: func.func @asymmetric_and_layout
func.func @asymmetric_and_layout(%x: tensor<2x3x4x!cimq.q<u8:0.5:zp=128>>, %f: tensor<2x3x4xf32>) -> (tensor<2x3x2x!cimq.q<s32:0.125>>, tensor<2x5x6x!cimq.q<u8:0.5:zp=128>>, tensor<2x2x2x4xf32>, tensor<2x3x4xf32>) {
  // CHECK: cimq.const {{.*}} : tensor<3x4x2x!cimq.q<s4n:0.25>>
  %w = cimq.const #cimq.blob<"w", "00112233445566778899"> : tensor<3x4x2x!cimq.q<s4n:0.25>>
  // CHECK: cimq.matmul %{{.*}}, %{{.*}} : {{.*}}zp=128{{.*}} -> tensor<2x3x2x!cimq.q<s32:0.125>>
  %a = cimq.matmul %x, %w : (tensor<2x3x4x!cimq.q<u8:0.5:zp=128>>, tensor<3x4x2x!cimq.q<s4n:0.25>>) -> tensor<2x3x2x!cimq.q<s32:0.125>>
  // CHECK: cimq.pad %{{.*}} {pads = array<i64: 0, 1, 1, 0, 1, 1>, value = 1.280000e+02 : f64}
  %p = cimq.pad %x {pads = array<i64: 0, 1, 1, 0, 1, 1>, value = 128.0 : f64} : (tensor<2x3x4x!cimq.q<u8:0.5:zp=128>>) -> tensor<2x5x6x!cimq.q<u8:0.5:zp=128>>
  // CHECK: cimq.gather %{{.*}} {axis = 1 : i64, indices = dense<{{\[\[}}0, 2], [1, 1]]> : tensor<2x2xi64>}
  %g = cimq.gather %f {axis = 1 : i64, indices = dense<[[0, 2], [1, 1]]> : tensor<2x2xi64>} : (tensor<2x3x4xf32>) -> tensor<2x2x2x4xf32>
  // CHECK: cimq.gelu %{{.*}} {approximate = "tanh"}
  %t = cimq.gelu %f {approximate = "tanh"} : (tensor<2x3x4xf32>) -> tensor<2x3x4xf32>
  func.return %a, %p, %g, %t : tensor<2x3x2x!cimq.q<s32:0.125>>, tensor<2x5x6x!cimq.q<u8:0.5:zp=128>>, tensor<2x2x2x4xf32>, tensor<2x3x4xf32>
}
