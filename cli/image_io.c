/* image_io.c: not written yet */
