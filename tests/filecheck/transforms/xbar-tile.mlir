// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=4 cols=8 cell-bits=2 dac-bits=2 mapping=dr}' | filecheck %s

// n = 6 inputs, m = 3 outputs, w = 4 on 2-bit cells: S = 2; dr: 2n = 12 physical rows -> 3 row
// tiles of 4, m*S = 6 columns -> 1 column tile of 8; a = 4 with a 2-bit DAC: 2 chunks.
// The loops stay in the IR: writes = 3, cycles = P * 3 * 2 = 6. The weight is not mapped here:
// xbar.map says how (dr, 2 slices of 2-bit cells); its cells are built when a run needs them.
func.func @main(%x: tensor<1x6xf32>) -> tensor<1x3x!cimq.q<s32:0.125>> {
  %q = cimq.quantize %x : (tensor<1x6xf32>) -> tensor<1x6x!cimq.q<s4:0.5>>
  %w = cimq.const dense<[[1, -1, 2], [2, 3, 4], [0, 7, -7], [-7, 1, 5], [3, 3, 3], [-2, -4, 6]]> : tensor<6x3xi8> : tensor<6x3x!cimq.q<s4n:0.25>>
  %a = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x6x!cimq.q<s4:0.5>>, tensor<6x3x!cimq.q<s4n:0.25>>) -> tensor<1x3x!cimq.q<s32:0.125>>
  func.return %a : tensor<1x3x!cimq.q<s32:0.125>>
}

// CHECK:       %[[ACC:.*]] = xbar.layer "fc"(%fc_rows, %fc_w) {kind = "linear", mapping = "dr", m = 3 : i64, n = 6 : i64, P = 1 : i64, H = 1 : i64, w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 1 : i64, slices = 2 : i64, row_tiles = 3 : i64, col_tiles = 1 : i64, chunks = 2 : i64, cell_bits = 2 : i64, dac_bits = 2 : i64}
// CHECK-NEXT:  ^bb0(%x_1: tensor<1x1x1x6x!cimq.q<s4:0.5>>, %w: tensor<1x6x3x!cimq.q<s4n:1.0>>):
// CHECK-NEXT:    %cells, %recomb, %corr = xbar.map %w {w_bits = 4 : i64, a_bits = 4 : i64, a_signed = 1 : i64, slices = 2 : i64, mapping = "dr"} : (tensor<1x6x3x!cimq.q<s4n:1.0>>) -> (!xbar.cells<1x12x6, c2>, tensor<6x2xi64>, tensor<1x3xi64>)
// CHECK-NEXT:    %xu = xbar.offset %x_1 {a_bits = 4 : i64, signed}
// CHECK-NEXT:    %buf = xbar.alloc : !xbar.buf<1x6>
// CHECK:         scf.for %h = %c0 to %c1 step %c1 {
// CHECK-NEXT:      scf.for %rt = %c0 to %c3 step %c1 {
// CHECK-NEXT:        scf.for %ct = %c0 to %c1 step %c1 {
// CHECK-NEXT:          %tile = xbar.program %cells[%h, %rt, %ct] : !xbar.cells<1x12x6, c2> -> !xbar.tile<4x8, c2>
// CHECK-NEXT:          scf.for %i = %c0 to %c2 step %c1 {
// CHECK-NEXT:            %plane = xbar.plane %xu[%h, %rt], %i {dual} : tensor<1x1x1x6xi32> -> !xbar.plane<4, d2>
// CHECK-NEXT:            %adc = xbar.cycle %tile, %plane : !xbar.tile<4x8, c2>, !xbar.plane<4, d2> -> !xbar.columns<8>
// CHECK-NEXT:            xbar.shift_add %buf[%h, %ct], %adc, %i {dac_bits = 2 : i64} : !xbar.buf<1x6>, !xbar.columns<8>
// CHECK-NEXT:          } {xbar.loop = "chunks"}
// CHECK-NEXT:        } {xbar.loop = "col_tiles"}
// CHECK-NEXT:      } {xbar.loop = "row_tiles"}
// CHECK-NEXT:    } {xbar.loop = "repeats"}
// CHECK-NEXT:    %acc = xbar.recombine %buf, %recomb, %corr : !xbar.buf<1x6>, tensor<6x2xi64>, tensor<1x3xi64> -> tensor<1x1x1x3xi32>
// CHECK-NEXT:    xbar.yield %acc : tensor<1x1x1x3xi32>
// CHECK:       xbar.unpack %[[ACC]]
