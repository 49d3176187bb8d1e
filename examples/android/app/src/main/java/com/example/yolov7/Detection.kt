package com.example.yolov7

import android.graphics.RectF

/** One detected object: box in the input bitmap's pixels (left, top, right, bottom). */
data class Detection(val box: RectF, val label: String, val score: Float)
