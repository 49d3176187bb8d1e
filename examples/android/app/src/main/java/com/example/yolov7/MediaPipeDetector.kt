package com.example.yolov7

import android.content.Context
import android.graphics.Bitmap
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.core.Delegate
import com.google.mediapipe.tasks.vision.core.RunningMode
import com.google.mediapipe.tasks.vision.objectdetector.ObjectDetector
import com.google.mediapipe.tasks.vision.objectdetector.ObjectDetectorResult

/**
 * YOLOv7 through MediaPipe's ObjectDetector.
 *
 * Needs the "android" TFLite export (class-aware NMS in the model; outputs boxes, classes,
 * scores, count) with its ObjectDetector metadata (labels, input normalisation, box layout),
 * e.g. `yolov7_tiny_int8_android.tflite` in `app/src/main/assets/`, exported at `inputSize`.
 *
 * MediaPipe stretches a frame to the model's square input; YOLOv7 is trained and evaluated on
 * letterboxed images, so the frame is letterboxed here first (`Letterbox`, as `predict()` does)
 * and MediaPipe's boxes, in pixels of the letterboxed input, are mapped back to the frame. The
 * detections are then `predict()`'s.
 */
class MediaPipeDetector(
    context: Context,
    modelAsset: String = "yolov7_tiny_int8_android.tflite",
    private val inputSize: Int = 640,
    scoreThreshold: Float = 0.25f,
    maxResults: Int = 100,
) : AutoCloseable {
    private val detector: ObjectDetector

    init {
        val baseOptions = BaseOptions.builder()
            .setModelAssetPath(modelAsset)
            .setDelegate(Delegate.CPU) // XNNPACK; the builtin-only graph also runs on Delegate.GPU
            .build()
        val options = ObjectDetector.ObjectDetectorOptions.builder()
            .setBaseOptions(baseOptions)
            .setRunningMode(RunningMode.IMAGE)
            .setScoreThreshold(scoreThreshold)
            .setMaxResults(maxResults)
            .build()
        detector = ObjectDetector.createFromOptions(context, options)
    }

    /** Detections with boxes in the bitmap's pixels and the class names from the metadata. */
    fun detect(bitmap: Bitmap): List<Detection> {
        val letterbox = Letterbox(bitmap, inputSize)
        val result: ObjectDetectorResult = detector.detect(BitmapImageBuilder(letterbox.bitmap).build())
        return result.detections().map { detection ->
            val category = detection.categories().first()
            val box = detection.boundingBox()
            Detection(
                box = letterbox.toFrame(box.left, box.top, box.right, box.bottom),
                label = category.categoryName(),
                score = category.score(),
            )
        }
    }

    override fun close() = detector.close()
}
