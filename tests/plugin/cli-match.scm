; cli-match.scm: on 8-bit RGB images the plug-in gives the same pixels as
; `ddpm generate` / `ddpm refine` with the same settings, for every sampler and with
; and without a period (the default, for images larger than the model's size, is one).  run-test.sh runs
; the CLI with the settings below and compares the PNGs.

(define img (gimp-image-new 64 48 RGB))
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 64 #:height 48
                                        #:steps 3 #:variance "posterior" #:seed 1234)
                 "match-posterior.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 37 #:height 29
                                        #:steps 2 #:variance "beta" #:seed 99 #:tileable #t)
                 "match-beta-tileable.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 48 #:height 32
                                        #:steps 3 #:sampler "ddim" #:eta 0.5 #:seed 5)
                 "match-ddim.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 48 #:height 32
                                        #:steps 3 #:sampler "ddim" #:eta 1 #:eta-t-max 0 #:seed 5)
                 "match-ddim-every-step.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 48 #:height 32
                                        #:steps 3 #:sampler "dpm-solver++" #:seed 6)
                 "match-dpm-solver.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 64 #:height 48
                                        #:steps 3 #:seed 7 #:tileable #t
                                        #:period 16 #:period-t refine-t)
                 "match-period.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 64 #:height 48
                                        #:steps 3 #:seed 7 #:tileable #t
                                        #:period 16 #:period-t refine-t #:period-eta 0.75)
                 "match-period-eta.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 64 #:height 48
                                        #:steps 3 #:seed 7 #:tileable #t
                                        #:period 16 #:period-t refine-t #:period-steps 5)
                 "match-period-steps.png")
(export-drawable (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:model test-model #:width 64 #:height 48
                                        #:steps 3 #:seed 7 #:tileable #t #:period 0)
                 "match-no-period.png")

; Refine without a selection: the whole layer, as `ddpm refine` without --mask.
(define base (plug-in-ddpm-generate #:run-mode RUN-NONINTERACTIVE #:image img
                                    #:model test-model #:width 64 #:height 48
                                    #:steps 2 #:seed 3))
(export-drawable base "match-refine-in.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                     #:model test-model #:timestep refine-t #:steps 3
                     #:variance "posterior" #:seed 8)
(export-drawable base "match-refine-out.png")
(plug-in-ddpm-refine #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                     #:model test-model #:timestep refine-t #:steps 3
                     #:sampler "ddim" #:seed 9)
(export-drawable base "match-refine-ddim.png")
(gimp-image-delete img)
