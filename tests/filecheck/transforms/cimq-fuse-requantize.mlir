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

// A residual add of two tensors is not a bias: nothing is fused past it.
// CHECK-LABEL: func.func @residual
func.func @residual(%x: tensor<1x2xf32>, %a: tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2x!cimq.q<s8:0.1>> {
  %f = cimq.dequantize %a : (tensor<1x2x!cimq.q<s32:0.125>>) -> tensor<1x2xf32>
  %g = cimq.add %f, %x : (tensor<1x2xf32>, tensor<1x2xf32>) -> tensor<1x2xf32>
  %o = cimq.quantize %g : (tensor<1x2xf32>) -> tensor<1x2x!cimq.q<s8:0.1>>
  func.return %o : tensor<1x2x!cimq.q<s8:0.1>>
  // CHECK: cimq.dequantize
  // CHECK: cimq.add
  // CHECK: cimq.quantize
  // CHECK-NOT: cimq.requantize
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
