// RUN: cimc-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

func.func @bits_too_wide(%x: tensor<4xf32>) -> tensor<4x!cimq.q<u9:0.1>> {
  %q = cimq.quantize %x : (tensor<4xf32>) -> tensor<4x!cimq.q<u9:0.1>>
  func.return %q : tensor<4x!cimq.q<u9:0.1>>
}
// CHECK: !cimq.q bit width 9 is not supported: use 1..8 (or 32 for accumulators)

// -----

func.func @bad_spec(%x: tensor<4xf32>) -> tensor<4xf32> {
  %q = cimq.quantize %x : (tensor<4xf32>) -> tensor<4x!cimq.q<x4:0.1>>
  func.return %x : tensor<4xf32>
}
// CHECK: bad quantized element spec 'x4': expected s<bits>[n] or u<bits>

// -----

func.func @narrow_unsigned(%x: tensor<4xf32>) -> tensor<4x!cimq.q<u4n:0.1>> {
  %q = cimq.quantize %x : (tensor<4xf32>) -> tensor<4x!cimq.q<u4n:0.1>>
  func.return %q : tensor<4x!cimq.q<u4n:0.1>>
}
// CHECK: !cimq.q: only signed types can be narrow-range

// -----

func.func @acc_scale(%x: tensor<1x4x!cimq.q<u4:0.5>>, %w: tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.5>> {
  %a = cimq.matmul %x, %w : (tensor<1x4x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.5>>
  func.return %a : tensor<1x2x!cimq.q<s32:0.5>>
}
// CHECK: cimq.matmul: accumulator scale must be input scale * weight scale

// -----

func.func @asymmetric(%x: tensor<1x4x!cimq.q<u8:0.5:zp=128>>, %w: tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>> {
  %a = cimq.matmul %x, %w : (tensor<1x4x!cimq.q<u8:0.5:zp=128>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x2x!cimq.q<s32:0.125>>
}
// CHECK: cimq.matmul: the input has zero point 128; crossbar operands must be symmetric (zero point 0)

// -----

func.func @shape_mismatch(%x: tensor<1x5x!cimq.q<u4:0.5>>, %w: tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>> {
  %a = cimq.matmul %x, %w : (tensor<1x5x!cimq.q<u4:0.5>>, tensor<4x2x!cimq.q<s4n:0.25>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x2x!cimq.q<s32:0.125>>
}
// CHECK: cimq.matmul: input inner dim (5,) != weight rows 4

// -----

func.func @conv_groups(%x: tensor<1x3x4x4x!cimq.q<u4:0.5>>, %w: tensor<4x2x3x3x!cimq.q<s4n:0.25>>) -> tensor<1x4x2x2x!cimq.q<s32:0.125>> {
  %a = cimq.conv %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, group = 1 : i64} : (tensor<1x3x4x4x!cimq.q<u4:0.5>>, tensor<4x2x3x3x!cimq.q<s4n:0.25>>) -> tensor<1x4x2x2x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x4x2x2x!cimq.q<s32:0.125>>
}
// CHECK: cimq.conv: input channels 3 != weight in-channels 2 * group 1

// -----

func.func @transpose_perm(%x: tensor<2x3xf32>) -> tensor<3x2xf32> {
  %t = cimq.transpose %x {perm = array<i64: 0, 0>} : (tensor<2x3xf32>) -> tensor<3x2xf32>
  func.return %t : tensor<3x2xf32>
}
// CHECK: cimq.transpose: [0, 0] is not a permutation

// -----

func.func @float_into_relu(%x: tensor<4x!cimq.q<u4:0.5>>) -> tensor<4x!cimq.q<u4:0.5>> {
  %r = cimq.relu %x : (tensor<4x!cimq.q<u4:0.5>>) -> tensor<4x!cimq.q<u4:0.5>>
  func.return %r : tensor<4x!cimq.q<u4:0.5>>
}
// CHECK: cimq.relu input must be an f32 tensor
