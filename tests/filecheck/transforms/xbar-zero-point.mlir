// RUN: cimc-opt %s -p 'convert-cimq-to-xbar,xbar-tile{rows=8 cols=8 cell-bits=4 dac-bits=1 mapping=dc}' | filecheck %s

// Weight zero points on crossbars. A uint8 weight with zero point 100 whose w - 100 spans
// [-100, 155] (9 signed bits), an int8 weight with zero point -50 (w + 50 up to 177), and an
// attention product whose written operand is uint8 with zero point 125 (onnxruntime's): the
// crossbar holds the integers as they are (uint8 in unsigned cells at 8 bits: `w_unsigned`);
// the input's zero point leaves with the recombination's correction (a_zp), the weight's with
// xbar.zp_correct: acc - w_zp * rowsum(x - zx). A uint4 weight whose w - zp fits 5 signed bits
// is stored centred, as before: no run-time correction.
func.func @main(%x: tensor<1x4xf32>, %a: tensor<1x3x4xf32>, %b: tensor<1x4x2xf32>) -> (tensor<1x2x!cimq.q<s32:0.125>>, tensor<1x2x!cimq.q<s32:0.125>>, tensor<1x3x2x!cimq.q<s32:0.125>>, tensor<1x2x!cimq.q<s32:0.125>>) {
  %q = cimq.quantize %x : (tensor<1x4xf32>) -> tensor<1x4x!cimq.q<u8:0.5:zp=3>>
  %w = cimq.const dense<[[0, 255], [100, 7], [200, 99], [1, 150]]> : tensor<4x2xi64> : tensor<4x2x!cimq.q<u8:0.25:zp=100>>
  %y = cimq.matmul %q, %w {layer = "fc"} : (tensor<1x4x!cimq.q<u8:0.5:zp=3>>, tensor<4x2x!cimq.q<u8:0.25:zp=100>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  %v = cimq.const dense<[[-128, 127], [0, 7], [3, -99], [1, 50]]> : tensor<4x2xi64> : tensor<4x2x!cimq.q<s8:0.25:zp=-50>>
  %z = cimq.matmul %q, %v {layer = "fs"} : (tensor<1x4x!cimq.q<u8:0.5:zp=3>>, tensor<4x2x!cimq.q<s8:0.25:zp=-50>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  %qa = cimq.quantize %a : (tensor<1x3x4xf32>) -> tensor<1x3x4x!cimq.q<u8:0.5:zp=7>>
  %qb = cimq.quantize %b : (tensor<1x4x2xf32>) -> tensor<1x4x2x!cimq.q<u8:0.25:zp=125>>
  %s = cimq.matmul_act %qa, %qb {layer = "qk"} : (tensor<1x3x4x!cimq.q<u8:0.5:zp=7>>, tensor<1x4x2x!cimq.q<u8:0.25:zp=125>>) -> tensor<1x3x2x!cimq.q<s32:0.125>>
  %u = cimq.const dense<[[0, 15], [3, 7], [2, 9], [1, 5]]> : tensor<4x2xi64> : tensor<4x2x!cimq.q<u4:0.25:zp=3>>
  %t = cimq.matmul %q, %u {layer = "f4"} : (tensor<1x4x!cimq.q<u8:0.5:zp=3>>, tensor<4x2x!cimq.q<u4:0.25:zp=3>>) -> tensor<1x2x!cimq.q<s32:0.125>>
  func.return %y, %z, %s, %t : tensor<1x2x!cimq.q<s32:0.125>>, tensor<1x2x!cimq.q<s32:0.125>>, tensor<1x3x2x!cimq.q<s32:0.125>>, tensor<1x2x!cimq.q<s32:0.125>>
}

// CHECK:       %fc_w = cimq.const #cimq.blob<"fc.xbar_weight", "{{.*}}"> : tensor<1x4x2x!cimq.q<u8:1.0:zp=100>>
// CHECK:       xbar.layer "fc"({{.*}}) {{{.*}} w_bits = 8 : i64, a_bits = 8 : i64, a_signed = 0 : i64, slices = 2 : i64,
// CHECK:         %cells, %recomb, %corr = xbar.map %w {{{.*}}, mapping = "dc", a_zp = 3 : i64, w_unsigned}
// CHECK:         %acc = xbar.recombine %buf, %recomb, %corr
// CHECK-NEXT:    %yz = xbar.zp_correct %acc, %x_1 {w_zp = 100 : i64} : (tensor<1x1x1x2xi32>, tensor<1x1x1x4x!cimq.q<u8:0.5:zp=3>>) -> tensor<1x1x1x2xi32>
// CHECK-NEXT:    xbar.yield %yz : tensor<1x1x1x2xi32>

// CHECK:       %fs_w = cimq.const #cimq.blob<"fs.xbar_weight", "{{.*}}"> : tensor<1x4x2x!cimq.q<s8:1.0:zp=-50>>
// CHECK:       xbar.layer "fs"({{.*}}) {{{.*}} w_bits = 8 : i64,
// CHECK:         xbar.map %w_1 {{{.*}}, mapping = "dc", a_zp = 3 : i64} :
// CHECK:         xbar.zp_correct %{{.*}}, %x_2 {w_zp = -50 : i64}

// CHECK:       xbar.layer "qk"({{.*}}) {{{.*}} w_bits = 8 : i64, {{.*}} dynamic}
// CHECK:         xbar.map %w_2 {{{.*}}, a_zp = 7 : i64, w_unsigned} : (tensor<1x1x4x2x!cimq.q<u8:0.25:zp=125>>)
// CHECK:         xbar.zp_correct %{{.*}}, %x_3 {w_zp = 125 : i64} : (tensor<1x1x3x2xi32>, tensor<1x1x3x4x!cimq.q<u8:0.5:zp=7>>) -> tensor<1x1x3x2xi32>

// CHECK:       %f4_w = cimq.const #cimq.blob<"f4.xbar_weight", "{{.*}}"> : tensor<1x4x2x!cimq.q<s5:1.0>>
// CHECK:       xbar.layer "f4"({{.*}}) {{{.*}} w_bits = 5 : i64,
// CHECK-NOT:     xbar.zp_correct
// CHECK:       func.return
