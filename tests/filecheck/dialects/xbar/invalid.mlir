// RUN: cimc-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

func.func @plane_rows(%t: !xbar.tile<8x8, c4>, %p: !xbar.plane<4, d1>) {
  %c = xbar.cycle %t, %p : !xbar.tile<8x8, c4>, !xbar.plane<4, d1> -> !xbar.columns<8>
  func.return
}
// CHECK: xbar.cycle: a plane of 4 rows on a tile of 8 rows

// -----

func.func @narrowed(%p: tensor<1x1x4x9x!cimq.q<u8:0.5>>, %w: tensor<1x9x2x!cimq.q<s6n:1.0>>) {
  %m = xbar.matmul %p, %w layer "c" kind "conv" w 4 a 8 : (tensor<1x1x4x9x!cimq.q<u8:0.5>>, tensor<1x9x2x!cimq.q<s6n:1.0>>) -> tensor<1x1x4x2xi32>
  func.return
}
// CHECK: xbar.matmul: the weight is s6n and needs 6 bits but the layer uses 4; bits can only grow

// -----

func.func @bad_cells(%g: !xbar.cells<1x4x4, c9>) {
  func.return
}
// CHECK: !xbar.cells: cell bits 9 not in 1..8

// -----

func.func @map_recomb(%w: tensor<1x6x3x!cimq.q<s4n:1.0>>) {
  %c, %r, %k = xbar.map %w {w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 0 : i64, slices = 1 : i64, mapping = "dc"} : (tensor<1x6x3x!cimq.q<s4n:1.0>>) -> (!xbar.cells<1x6x6, c4>, tensor<5x2xi64>, tensor<1x3xi64>)
  func.return
}
// CHECK: xbar.map: recomb [5, 2] must be [6, 2]

// -----

func.func @zp_zero(%a: tensor<1x1x3x2xi32>, %x: tensor<1x1x3x4x!cimq.q<u8:0.5:zp=7>>) {
  %y = xbar.zp_correct %a, %x {w_zp = 0 : i64} : (tensor<1x1x3x2xi32>, tensor<1x1x3x4x!cimq.q<u8:0.5:zp=7>>) -> tensor<1x1x3x2xi32>
  func.return
}
// CHECK: xbar.zp_correct: w_zp must be non-zero (no correction: no op)

// -----

func.func @zp_rows(%a: tensor<1x1x3x2xi32>, %x: tensor<1x1x5x4x!cimq.q<u8:0.5>>) {
  %y = xbar.zp_correct %a, %x {w_zp = 4 : i64} : (tensor<1x1x3x2xi32>, tensor<1x1x5x4x!cimq.q<u8:0.5>>) -> tensor<1x1x3x2xi32>
  func.return
}
// CHECK: xbar.zp_correct: accumulator [1, 1, 3, 2] and input [1, 1, 5, 4] are not [B, H, P, m] and [B, H, P, n]

// -----

func.func @zp_result(%a: tensor<1x1x3x2xi32>, %x: tensor<1x1x3x4x!cimq.q<u8:0.5>>) {
  %y = xbar.zp_correct %a, %x {w_zp = 4 : i64} : (tensor<1x1x3x2xi32>, tensor<1x1x3x4x!cimq.q<u8:0.5>>) -> tensor<1x1x3x3xi32>
  func.return
}
// CHECK: xbar.zp_correct: the result has the accumulator's type

// -----

func.func @zp_float_input(%a: tensor<1x1x3x2xi32>, %x: tensor<1x1x3x4xf32>) {
  %y = xbar.zp_correct %a, %x {w_zp = 4 : i64} : (tensor<1x1x3x2xi32>, tensor<1x1x3x4xf32>) -> tensor<1x1x3x2xi32>
  func.return
}
// CHECK: xbar.zp_correct input must be a quantized tensor (!cimq.q)

// -----

func.func @unsigned_cells_of_signed(%w: tensor<1x4x2x!cimq.q<s8:1.0>>) {
  %c, %r, %k = xbar.map %w {w_bits = 8 : i64, a_bits = 8 : i64, a_signed = 0 : i64, slices = 2 : i64, mapping = "dc", w_unsigned} : (tensor<1x4x2x!cimq.q<s8:1.0>>) -> (!xbar.cells<1x4x8, c4>, tensor<8x2xi64>, tensor<1x2xi64>)
  func.return
}
// CHECK: xbar.map: a s8 operand at 8 bits is stored as signed cells: w_unsigned must be absent

// -----

func.func @uint8_needs_unsigned_cells(%w: tensor<1x4x2x!cimq.q<u8:1.0:zp=100>>) {
  %c, %r, %k = xbar.map %w {w_bits = 8 : i64, a_bits = 8 : i64, a_signed = 0 : i64, slices = 2 : i64, mapping = "dc"} : (tensor<1x4x2x!cimq.q<u8:1.0:zp=100>>) -> (!xbar.cells<1x4x8, c4>, tensor<8x2xi64>, tensor<1x2xi64>)
  func.return
}
// CHECK: xbar.map: a u8 operand at 8 bits is stored as unsigned cells: w_unsigned must be set
