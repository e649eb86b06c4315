; common.scm: helpers for the plug-in tests (Script-Fu, v3 dialect).
;
; run-test.sh puts these definitions in front of every test script:
;   out-dir          where exported PNGs go (run-test.sh checks them later)
;   test-model       absolute path of the model folder the tests use
;   test-model-T     its number of training timesteps T
;   test-model-name  its folder name in the profile's ddpm-models folder

(define (out name) (string-append out-dir "/" name))

; A failed check stops the batch: gimp-console exits with status 70.
(define (check what ok)
  (if ok
      (begin (display (string-append "ok - " what)) (newline))
      (error (string-append "FAILED - " what))))

(define (layer-count image) (vector-length (gimp-image-get-layers image)))

; Export one drawable as OUT-DIR/NAME (PNG): a copy of it, alone in a new
; image of the same base type and precision, so the file holds exactly its
; pixels (and alpha) at its own size.
(define (export-drawable drawable name)
  (let* ((src  (gimp-item-get-image drawable))
         (img  (gimp-image-new-with-precision (gimp-drawable-get-width drawable)
                                              (gimp-drawable-get-height drawable)
                                              (gimp-image-get-base-type src)
                                              (gimp-image-get-precision src)))
         (copy (gimp-layer-new-from-drawable drawable img)))
    (gimp-image-insert-layer img copy 0 0)
    (gimp-layer-set-offsets copy 0 0)
    (gimp-file-save RUN-NONINTERACTIVE img (out name) -1)
    (gimp-image-delete img)))

; A background layer of one color, so an image has something to refine
; around and a layer to be "active".
(define (add-filled-layer image name r g b)
  (let ((layer (gimp-layer-new image name
                               (gimp-image-get-width image) (gimp-image-get-height image)
                               (if (= (gimp-image-get-base-type image) GRAY) GRAY-IMAGE RGB-IMAGE)
                               100 LAYER-MODE-NORMAL)))
    (gimp-image-insert-layer image layer 0 0)
    (gimp-context-set-foreground (list r g b))
    (gimp-drawable-fill layer FILL-FOREGROUND)
    layer))

; A timestep for refine: 60 % of T (at least 3, so 3 steps fit).
(define refine-t (max 3 (quotient (* test-model-T 6) 10)))
