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
