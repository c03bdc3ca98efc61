#!/bin/sh
# hash-compare.sh OLD NEW: the final parameter hashes (traind-train --hash, 1 epoch of 3000
# samples) of two builds for seven models x threads 1,2 x batch 64,37 (the seventh: BatchNorm
# over 13 and 21 channels: lanes of 8 with a remainder, split unevenly on 2 threads), then resnet20 on 300 Fashion-MNIST
# samples, then precision bf16 (MLP, lenet5) where the CPU has it; SAME on each line when an engine
# change kept the bits. Used for the speed branch (issue 12).
# Then the language models of issue 24, char_lstm and gpt (their defaults), on the first 24.5 KB of
# Debian's fortunes (a char vocabulary, context 64, 256 windows) at threads 1, 2 and batch 64, 37:
# a build that knows the key seq_kernels runs them with seq_kernels 1, the arithmetic of every job
# stored before the key (doc/sequences.md); two builds that know it, with seq_kernels 2 too
# (char_lstm, gpt, and gpt in precision bf16 where the CPU has it).
# Then kernels portable on each instruction-set path (TRAIND_ISA), where both builds know the key.
A=$1; B=$2
: "${TRAIND_DATA_DIR:?set TRAIND_DATA_DIR}"
for m in "" lenet5 "conv2d(3,3,padding=1),relu,maxpool2d(2),conv2d(4,3,stride=2,bias=false),tanh,flatten,linear(10)" "flatten,linear(64),relu,dropout(0.3),linear(32),batchnorm1d,relu,linear(10)" "conv2d(4,3),batchnorm2d,relu,avgpool2d(2),flatten,linear(10)" "flatten,linear(100),gelu,linear(10)" "conv2d(13,3),batchnorm2d,relu,conv2d(21,3,stride=2),batchnorm2d,relu,flatten,linear(10)"; do
 for th in 1 2; do
  for bs in 64 37; do
   ha=$($A --epochs 1 --threads $th --batch-size $bs --train-size 3000 --no-test --hash ${m:+--model "$m"} 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
   hb=$($B --epochs 1 --threads $th --batch-size $bs --train-size 3000 --no-test --hash ${m:+--model "$m"} 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
   if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
   echo "$r threads=$th batch=$bs model=${m:-mlp}"
  done
 done
done
# an MLP whose second linear layer is split across the team and passes a gradient down (its
# optimizer update waits for the phase's end: net_backward_update), with SGD and momentum too
for opt in "" "--optimizer sgd --momentum 0.9 --weight-decay 5e-4 --lr 0.05"; do
 for th in 1 2; do
  ha=$($A --epochs 1 --threads $th --train-size 3000 --no-test --hash --hidden 512,256 $opt 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
  hb=$($B --epochs 1 --threads $th --train-size 3000 --no-test --hash --hidden 512,256 $opt 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
  if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
  echo "$r threads=$th batch=64 model=mlp(512,256) ${opt:-adam}"
 done
done
for th in 1 2; do
 for bs in 64 37; do
  ha=$($A --dataset fashion-mnist --model resnet20 --epochs 1 --threads $th --batch-size $bs --train-size 300 --val-size 100 --no-test --hash 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
  hb=$($B --dataset fashion-mnist --model resnet20 --epochs 1 --threads $th --batch-size $bs --train-size 300 --val-size 100 --no-test --hash 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
  if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
  echo "$r threads=$th batch=$bs model=resnet20 (fashion-mnist, 300 samples)"
 done
done
# precision bf16 (doc/precision.md), where the CPU has it: the lesson's MLP and lenet5, threads 1 and 2
if $B --epochs 1 --train-size 64 --val-size 64 --no-test --precision bf16 >/dev/null 2>&1; then
 for m in "" lenet5; do
  for th in 1 2; do
   ha=$($A --epochs 1 --threads $th --train-size 3000 --no-test --hash --precision bf16 ${m:+--model "$m"} 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
   hb=$($B --epochs 1 --threads $th --train-size 3000 --no-test --hash --precision bf16 ${m:+--model "$m"} 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
   if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
   echo "$r threads=$th batch=64 model=${m:-mlp} precision=bf16"
  done
 done
else
 echo "bf16: not compared (this CPU or build has no bf16 path)"
fi
# kernels portable (issue 25; doc/portable.md), where both builds know the key: on each path this CPU
# runs (TRAIND_ISA), the MLP, lenet5, a model with a strided convolution and resnet20 (the plain C
# path, slow, the MLP and the strided model on fewer samples), threads 1 and 2
if $A --help 2>&1 | grep -q -- --kernels && $B --help 2>&1 | grep -q -- --kernels; then
 for isa in avx512 avx2 generic; do
  if ! TRAIND_ISA=$isa $B --epochs 1 --train-size 64 --val-size 64 --no-test --kernels portable >/dev/null 2>&1; then
   echo "portable $isa: not compared (this CPU cannot run it)"
   continue
  fi
  for m in "" lenet5 "conv2d(3,3,padding=1),relu,maxpool2d(2),conv2d(4,3,stride=2,bias=false),tanh,flatten,linear(10)" resnet20; do
   n=3000; set --
   [ "$m" = resnet20 ] && { n=300; set -- --dataset fashion-mnist --val-size 100; }
   if [ $isa = generic ]; then
    [ "$m" = lenet5 ] || [ "$m" = resnet20 ] && continue
    n=500
   fi
   for th in 1 2; do
    ha=$(TRAIND_ISA=$isa $A "$@" --kernels portable --epochs 1 --threads $th --batch-size 37 --train-size $n --no-test --hash ${m:+--model "$m"} 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    hb=$(TRAIND_ISA=$isa $B "$@" --kernels portable --epochs 1 --threads $th --batch-size 37 --train-size $n --no-test --hash ${m:+--model "$m"} 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
    echo "$r threads=$th batch=37 model=${m:-mlp} kernels=portable isa=$isa ($n samples)"
   done
  done
 done
else
 echo "kernels portable: not compared (a build without the key)"
fi
FORT=/usr/share/games/fortunes/fortunes
if [ -r "$FORT" ] && [ -x /usr/bin/python3 ]; then
 TXT=$(mktemp -d /tmp/hash-compare-text-XXXXXX)
 mkdir "$TXT/fort" && cp "$FORT" "$TXT/fort/fort.txt"
 /usr/bin/python3 -c '
import json, sys
d = sys.argv[1]
t = open(d + "/fort.txt", encoding="utf-8").read()
json.dump({"vocab": "char", "files": ["fort.txt"], "code_points": sorted({ord(c) for c in t}), "test_fraction": 0.1},
          open(d + "/dataset.json", "w"))' "$TXT/fort"
 old=""; $A --help 2>&1 | grep -q -- --seq-kernels && old="--seq-kernels 1"
 new=""; $B --help 2>&1 | grep -q -- --seq-kernels && new="--seq-kernels 1"
 for m in char_lstm gpt; do
  for th in 1 2; do
   for bs in 64 37; do
    set -- --data-dir "$TXT" --dataset fort --model $m --context 64 --epochs 1 --threads $th --batch-size $bs --train-size 256 --val-size 32 --no-test --hash
    ha=$($A "$@" $old 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    hb=$($B "$@" $new 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
    echo "$r threads=$th batch=$bs model=$m (fortunes 24.5 KB, context 64${new:+, B $new})"
   done
  done
 done
 # seq_kernels 2 (the blocked attention; jobs stored between the key and seq_kernels 3), when both
 # builds know it: char_lstm, gpt, and gpt in precision bf16 (seq_kernels 3 changed only bf16 jobs)
 if [ -n "$old" ] && [ -n "$new" ]; then
  for m in char_lstm gpt "gpt --precision bf16"; do
   case $m in *bf16*) $B --epochs 1 --train-size 64 --val-size 64 --no-test --precision bf16 >/dev/null 2>&1 || continue;; esac
   for th in 1 2; do
    for bs in 64 37; do
     set -- --data-dir "$TXT" --dataset fort --context 64 --epochs 1 --threads $th --batch-size $bs --train-size 256 --val-size 32 --no-test --hash --seq-kernels 2
     ha=$($A "$@" --model $m 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
     hb=$($B "$@" --model $m 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
     if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
     echo "$r threads=$th batch=$bs model=$m (fortunes 24.5 KB, context 64, seq_kernels 2)"
    done
   done
  done
 fi
 rm -rf "$TXT"
else
 echo "SKIPPED char_lstm, gpt: no $FORT (the fortunes package) or /usr/bin/python3"
fi
# conv onednn (doc/models.md): the conv models through oneDNN, when both builds have --conv (a
# build from before the key has not: SKIP); with OLD = NEW it checks that two runs repeat their bits.
if $A --help 2>&1 | grep -q -- "--conv" && $B --help 2>&1 | grep -q -- "--conv"; then
 for m in lenet5 "conv2d(3,3,padding=1),relu,maxpool2d(2),conv2d(4,3,stride=2,bias=false),tanh,flatten,linear(10)" "conv2d(13,3),batchnorm2d,relu,conv2d(21,3,stride=2),batchnorm2d,relu,flatten,linear(10)"; do
  for th in 1 2; do
   for bs in 64 37; do
    ha=$($A --conv onednn --epochs 1 --threads $th --batch-size $bs --train-size 3000 --no-test --hash --model "$m" 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    hb=$($B --conv onednn --epochs 1 --threads $th --batch-size $bs --train-size 3000 --no-test --hash --model "$m" 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
    echo "$r threads=$th batch=$bs model=$m conv=onednn"
   done
  done
 done
 # the blocked graph (engine/model/dnnblk.h): residual blocks with and without a conv shortcut,
 # a conv bias and BatchNorms over 16 and 32 channels kept in nChw16c (split unevenly at threads 2),
 # a dropout that needs NCHW, a global average pool; a BatchNorm CNN with max pools (blocked to
 # blocked, blocked to NCHW before flatten) and dropout; then resnet20 in fp32 and bf16
 BLK="conv2d(16,3,padding=1),batchnorm2d,relu,residual(conv2d(16,3,padding=1),batchnorm2d,relu,conv2d(16,3,padding=1,bias=false),batchnorm2d),relu,residual(conv2d(32,3,stride=2,padding=1,bias=false),batchnorm2d;shortcut=conv2d(32,1,stride=2)),relu,dropout(0.2),conv2d(16,3),relu,adaptiveavgpool2d(1,1),flatten,linear(10)"
 BNCNN="conv2d(16,3,padding=1),batchnorm2d,relu,maxpool2d(2),conv2d(32,3,padding=1),batchnorm2d,relu,maxpool2d(2),flatten,dropout(0.5),linear(64),relu,linear(10)"
 for m in blocked-residual bn-dropout-cnn; do
  if [ $m = blocked-residual ]; then M=$BLK; else M=$BNCNN; fi
  for th in 1 2; do
   for bs in 64 37; do
    ha=$($A --conv onednn --epochs 1 --threads $th --batch-size $bs --train-size 1000 --no-test --hash --model "$M" 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    hb=$($B --conv onednn --epochs 1 --threads $th --batch-size $bs --train-size 1000 --no-test --hash --model "$M" 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
    if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
    echo "$r threads=$th batch=$bs model=$m conv=onednn"
   done
  done
 done
 for pr in fp32 bf16; do
  for th in 1 2; do
   ha=$($A --conv onednn --precision $pr --dataset fashion-mnist --model resnet20 --epochs 1 --threads $th --batch-size 37 --train-size 300 --val-size 100 --no-test --hash 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
   hb=$($B --conv onednn --precision $pr --dataset fashion-mnist --model resnet20 --epochs 1 --threads $th --batch-size 37 --train-size 300 --val-size 100 --no-test --hash 2>&1 | grep -io "[0-9a-f]\{64\}" | tail -1)
   if [ -n "$ha" ] && [ "$ha" = "$hb" ]; then r=SAME; else r="DIFF($ha/$hb)"; fi
   echo "$r threads=$th batch=37 model=resnet20 precision=$pr conv=onednn (fashion-mnist, 300 samples)"
  done
 done
else
 echo "SKIP conv=onednn: $A or $B has no --conv"
fi
