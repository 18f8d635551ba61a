// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8 dac-bits=2},xbar-skip-zero-planes' | filecheck %s
// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8 dac-bits=2}' | filecheck %s --check-prefix=PAPER

// Every crossbar cycle may be skipped at run time when its plane is zero on every row of the
// tile: the program is the same (same loops, same trip counts: the static worst case), the
// cycle carries {skip_zero} and the executor counts what it skipped.

func.func @main(%x: tensor<1x6xf32>) -> tensor<1x3x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x6xf32>) -> tensor<1x6x!cimq.q<u4:0.5>>
  %w = cimq.const dense<[[1, -1, 2], [2, 3, 4], [0, 7, -7], [-7, 1, 5], [3, 3, 3], [-2, -4, 6]]> : tensor<6x3xi8> : tensor<6x3x!cimq.q<s4n:0.25>>
  %y = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x6x!cimq.q<u4:0.5>>, tensor<6x3x!cimq.q<s4n:0.25>>) -> tensor<1x3x!cimq.q<s32:0.125>>
  func.return %y : tensor<1x3x!cimq.q<s32:0.125>>
}

// CHECK:       xbar.layer "fc"
// CHECK-SAME:  row_tiles = 2 : i64, col_tiles = 1 : i64, chunks = 2 : i64
// CHECK:       scf.for %i = %{{.*}} to %[[TWO:.*]] step
// CHECK-NEXT:    %plane = xbar.plane %xu[%h, %rt], %i : tensor<1x1x1x6xi32> -> !xbar.plane<4, d2>
// CHECK-NEXT:    %adc = xbar.cycle %tile, %plane {skip_zero} : !xbar.tile<4x8, c4>, !xbar.plane<4, d2> -> !xbar.columns<8>
// CHECK-NEXT:    xbar.shift_add
// CHECK-NEXT:  } {xbar.loop = "chunks"}

// PAPER:       %adc = xbar.cycle %tile, %plane : !xbar.tile<4x8, c4>
