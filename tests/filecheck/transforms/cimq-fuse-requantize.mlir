// RUN: cimc-opt %s -p cimq-fuse-requantize | filecheck %s

// dequantize -> add(bias) -> relu -> quantize becomes one requantize with the bias and clamp.
// CHECK-LABEL: func.func @bias_relu
func.func @bias_relu(%x: tensor<1x4xf32>) -> tensor<1x2x!cimq.q<u8:0.1>> {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, -1], [2, 3], [0, 7], [-7, 1]]> : tensor<4x2xi8> : tensor<4x2x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w : (tensor<1x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2xf32>
  %b = cimq.const dense<[0.5, -0.25]> : tensor<2xf32> : tensor<2xf32>
  %g = cimq.add %f, %b : (tensor<1x2xf32>, tensor<2xf32>) -> tensor<1x2xf32>
  %r = cimq.relu %g : (tensor<1x2xf32>) -> tensor<1x2xf32>
  %o = cimq.quantize %r {src = "r.Clip_output_0"} : (tensor<1x2xf32>) -> tensor<1x2x!cimq.q<u8:0.1>>
  func.return %o : tensor<1x2x!cimq.q<u8:0.1>>
  // CHECK:      %[[A:.*]] = cimq.matmul
  // CHECK-NEXT: %[[B:.*]] = cimq.const dense<[5.000000e-01, -2.500000e-01]>
  // CHECK-NEXT: %{{.*}} = cimq.requantize %[[A]], %[[B]] {bias_axis = 1 : i64, clamp_min = 0.000000e+00 : f64, src = "r.Clip_output_0"}
  // CHECK-NOT:  cimq.relu
  // CHECK-NOT:  cimq.dequantize
}

// A residual add of two tensors is the residual operand, not a bias.
// CHECK-LABEL: func.func @residual
func.func @residual(%x: tensor<1x2xf32>, %a: tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2x!cimq.q<s8:0.1>> {
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2xf32>
  %g = cimq.add %f, %x : (tensor<1x2xf32>, tensor<1x2xf32>) -> tensor<1x2xf32>
  %o = cimq.quantize %g : (tensor<1x2xf32>) -> tensor<1x2x!cimq.q<s8:0.1>>
  func.return %o : tensor<1x2x!cimq.q<s8:0.1>>
  // CHECK-NOT: cimq.dequantize
  // CHECK: cimq.requantize %a residual %x : (tensor<1x2x!cimq.q<s32:0.125>>, residual tensor<1x2xf32>) -> tensor<1x2x!cimq.q<s8:0.1>>
  // CHECK-NOT: cimq.add
}

// A ResNet block's tail: per-channel scale and bias, the residual, ReLU; the ReLU output is also
// the next block's residual, so the fused op returns it too.
// CHECK-LABEL: func.func @block
func.func @block(%a: tensor<1x2x3x3x!cimq.q<s32:0.125>>, %x: tensor<1x2x3x3xf32>) -> (tensor<1x2x3x3x!cimq.q<u8:0.1>>, tensor<1x2x3x3xf32>) {
  %s = cimq.const dense<[[[0.5]], [[2.0]]]> : tensor<2x1x1xf32> : tensor<2x1x1xf32>
  %b = cimq.const dense<[[[1.0]], [[-1.0]]]> : tensor<2x1x1xf32> : tensor<2x1x1xf32>
  %f = cimq.dequantize %a : (tensor<1x2x3x3x!cimq.q<s32:0.125>>) -> tensor<1x2x3x3xf32>
  %m = cimq.mul %f, %s : (tensor<1x2x3x3xf32>, tensor<2x1x1xf32>) -> tensor<1x2x3x3xf32>
  %g = cimq.add %m, %b : (tensor<1x2x3x3xf32>, tensor<2x1x1xf32>) -> tensor<1x2x3x3xf32>
  %h = cimq.add %x, %g : (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  %r = cimq.relu %h : (tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32>
  %o = cimq.quantize %r : (tensor<1x2x3x3xf32>) -> tensor<1x2x3x3x!cimq.q<u8:0.1>>
  func.return %o, %r : tensor<1x2x3x3x!cimq.q<u8:0.1>>, tensor<1x2x3x3xf32>
  // CHECK:      %[[Q:.*]], %[[Y:.*]] = cimq.requantize %a, %b mul %s residual %x {mul_axis = 1 : i64, bias_axis = 1 : i64, clamp_min = 0.000000e+00 : f64}
  // CHECK-SAME: -> tensor<1x2x3x3x!cimq.q<u8:0.1>>, tensor<1x2x3x3xf32>
  // CHECK-NEXT: func.return %[[Q]], %[[Y]]
}

// A dequantized value with a second use must stay.
// CHECK-LABEL: func.func @two_uses
func.func @two_uses(%a: tensor<1x2x!cimq.q<s32:0.125>>) -> (tensor<1x2x!cimq.q<s8:0.1>>, tensor<1x2xf32>) {
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2xf32>
  %o = cimq.quantize %f : (tensor<1x2xf32>) -> tensor<1x2x!cimq.q<s8:0.1>>
  func.return %o, %f : tensor<1x2x!cimq.q<s8:0.1>>, tensor<1x2xf32>
  // CHECK: cimq.dequantize
  // CHECK: cimq.quantize
  // CHECK-NOT: cimq.requantize
}

// Clip bounds become the clamp.
// CHECK-LABEL: func.func @clip
func.func @clip(%a: tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2x!cimq.q<s8:0.1>> {
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2xf32>
  %c = cimq.clip %f {min = -1.5 : f64, max = 6.0 : f64} : (tensor<1x2xf32>) -> tensor<1x2xf32>
  %o = cimq.quantize %c : (tensor<1x2xf32>) -> tensor<1x2x!cimq.q<s8:0.1>>
  func.return %o : tensor<1x2x!cimq.q<s8:0.1>>
  // CHECK: cimq.requantize %{{.*}} {clamp_min = -1.500000e+00 : f64, clamp_max = 6.000000e+00 : f64}
}
