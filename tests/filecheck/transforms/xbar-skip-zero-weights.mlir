// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8},xbar-skip-zero-weights' | filecheck %s
// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8}' | filecheck %s --check-prefix=PAPER

// 8-bit weights on 4-bit cells, dc: S = 2, output o uses columns 4o .. 4o+3 = [+s0, -s0, +s1, -s1].
// Output 0 is small (|w| < 16: no high slice) and output 2 only positive and small: of the 12
// columns, 0, 1, 4, 5, 6, 7 and 8 hold a non-zero cell -> 7 columns, one column tile instead of
// two. Rows 4 and 5 are zero: their row tile holds no non-zero cell and is not programmed.
// The paper's program: 2 x 2 = 4 writes; here one.

func.func @main(%x: tensor<1x6xf32>) -> tensor<1x3x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x6xf32>) -> tensor<1x6x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, 100, 5], [-2, -50, 6], [3, 20, 7], [0, 17, 8], [0, 0, 0], [0, 0, 0]]> : tensor<6x3xi8> : tensor<6x3x!cimq.q<s8n:0.25>>
  %y = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x6x!cimq.q<u4:0.5>>, tensor<6x3x!cimq.q<s8n:0.25>>) -> tensor<1x3x!cimq.q<s32:0.125>>
  func.return %y : tensor<1x3x!cimq.q<s32:0.125>>
}

// CHECK:       xbar.layer "fc"
// CHECK-SAME:  slices = 2 : i64, row_tiles = 2 : i64, col_tiles = 1 : i64
// CHECK:       xbar.map %w {{.*}}columns = array<i64: 0, 1, 4, 5, 6, 7, 8>{{.*}} -> (!xbar.cells<1x6x7, c4>, tensor<7x2xi64>, tensor<1x3xi64>)
// CHECK:       scf.for %k = %{{.*}} to %[[ONE:.*]] step
// CHECK-NEXT:    %h, %rt, %ct = xbar.tile_at %k {tiles = array<i64: 0, 0, 0>}
// CHECK-NEXT:    %tile = xbar.program %cells[%h, %rt, %ct]
// CHECK:       } {xbar.loop = "tiles"}

// PAPER:       xbar.layer "fc"
// PAPER-SAME:  row_tiles = 2 : i64, col_tiles = 2 : i64
// PAPER:       -> (!xbar.cells<1x6x12, c4>
// PAPER-NOT:   xbar.tile_at
