// RUN: cimc-opt %s -p convert-cimq-to-xbar | filecheck %s

// A depthwise conv (one input channel per group, two outputs each): H = G = 2 repeats of an (m = 2, n = 1*3*3 = 9, P = 4*4 = 16) layer between
// the host ops im2col and col2im. The OIHW weight becomes [G, n_g, m_g] on its integer grid.
// CHECK-LABEL: func.func @grouped
func.func @grouped(%x: tensor<1x2x4x4xf32>) -> tensor<1x4x4x4x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4x!cimq.q<s3:0.5>>
  %w = cimq.const dense<1> : tensor<4x1x3x3xi8> : tensor<4x1x3x3x!cimq.q<s4n:0.25>>
  %a = cimq.conv %q, %w {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, group = 2 : i64, layer = "c1"} : (tensor<1x2x4x4x!cimq.q<s3:0.5>>, tensor<4x1x3x3x!cimq.q<s4n:0.25>>) -> tensor<1x4x4x4x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x4x4x4x!cimq.q<s32:0.125>>
  // CHECK-NOT:  cimq.conv
  // CHECK:      %[[W:.*]] = cimq.const #cimq.blob<"c1.xbar_weight", "{{[0-9a-f]+}}"> : tensor<2x9x2x!cimq.q<s4n:1.0>>
  // CHECK:      %[[P:.*]] = xbar.im2col %q {kernel = array<i64: 3, 3>, {{.*}}groups = 2 : i64} : (tensor<1x2x4x4x!cimq.q<s3:0.5>>) -> tensor<1x2x16x9x!cimq.q<s3:0.5>>
  // CHECK:      %[[M:.*]] = xbar.matmul %[[P]], %[[W]] layer "c1" kind "depthwise" w 4 a 3 : {{.*}} -> tensor<1x2x16x2xi32>
  // CHECK:      xbar.col2im %[[M]] : (tensor<1x2x16x2xi32>) -> tensor<1x4x4x4x!cimq.q<s32:0.125>>
}

// Linear on 3 tokens: P = 3, H = 1.
// CHECK-LABEL: func.func @tokens
func.func @tokens(%x: tensor<1x3x4xf32>) -> tensor<1x3x2x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x3x4xf32>) -> tensor<1x3x4x!cimq.q<u8:0.5>>
  %w = cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8> : tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x3x4x!cimq.q<u8:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x3x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x3x2x!cimq.q<s32:0.125>>
  // CHECK:      %[[R:.*]] = cimq.reshape %q {shape = array<i64: 0, 1, 3, 4>} : {{.*}} -> tensor<1x1x3x4x!cimq.q<u8:0.5>>
  // CHECK:      %[[M:.*]] = xbar.matmul %[[R]], %{{.*}} layer "fc" kind "linear" w 4 a 8 : {{.*}} -> tensor<1x1x3x2xi32>
  // CHECK:      xbar.unpack %[[M]] : (tensor<1x1x3x2xi32>) -> tensor<1x3x2x!cimq.q<s32:0.125>>
}

// Attention Q @ K^T with 2 heads: the written operand is dynamic.
// CHECK-LABEL: func.func @attention
func.func @attention(%a: tensor<1x2x5x3xf32>, %b: tensor<1x2x3x5xf32>) -> tensor<1x2x5x5x!cimq.q<s32:0.125>> {
  %qa = cimq.quantize %a : (tensor<1x2x5x3xf32>) -> tensor<1x2x5x3x!cimq.q<s8:0.5>>
  %qb = cimq.quantize %b : (tensor<1x2x3x5xf32>) -> tensor<1x2x3x5x!cimq.q<s8:0.25>>
  %y = cimq.matmul_act %qa, %qb {layer = "qk"} : (tensor<1x2x5x3x!cimq.q<s8:0.5>>, tensor<1x2x3x5x!cimq.q<s8:0.25>>) -> tensor<1x2x5x5x!cimq.q<s32:0.125>>
  func.return %y : tensor<1x2x5x5x!cimq.q<s32:0.125>>
  // CHECK:      %[[M:.*]] = xbar.matmul_dyn %qa, %qb layer "qk" kind "matmul" w 8 a 8 : {{.*}} -> tensor<1x2x5x5xi32>
  // CHECK:      xbar.unpack %[[M]]
}
