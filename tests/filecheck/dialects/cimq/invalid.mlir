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

func.func @pad_value_off_grid(%x: tensor<1x4x!cimq.q<u4:0.5:zp=3>>) -> tensor<1x6x!cimq.q<u4:0.5:zp=3>> {
  %p = cimq.pad %x {pads = array<i64: 0, 1, 0, 1>, value = 2.5 : f64} : (tensor<1x4x!cimq.q<u4:0.5:zp=3>>) -> tensor<1x6x!cimq.q<u4:0.5:zp=3>>
  func.return %p : tensor<1x6x!cimq.q<u4:0.5:zp=3>>
}
// CHECK: cimq.pad: pad value 2.5 is not an integer of u4 [0, 15]

// -----

func.func @gather_index_and_indices(%x: tensor<1x4xf32>) -> tensor<1xf32> {
  %g = cimq.gather %x {axis = 1 : i64, index = 0 : i64, indices = dense<[1, 2]> : tensor<2xi64>} : (tensor<1x4xf32>) -> tensor<1xf32>
  func.return %g : tensor<1xf32>
}
// CHECK: cimq.gather needs exactly one of index and indices

// -----

func.func @gelu_mode(%x: tensor<1x4xf32>) -> tensor<1x4xf32> {
  %g = cimq.gelu %x {approximate = "sigmoid"} : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %g : tensor<1x4xf32>
}
// CHECK: cimq.gelu: approximate must be "none" or "tanh", got "sigmoid"

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
