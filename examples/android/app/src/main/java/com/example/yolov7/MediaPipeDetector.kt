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
 * Needs the "android" TFLite export (TFLite_Detection_PostProcess outputs: boxes, classes,
 * scores, count) with ObjectDetector metadata (labels, input normalisation), e.g.
 * `yolov7_tiny_int8_android.tflite` in `app/src/main/assets/`. MediaPipe resizes the camera
 * frame to the model input, runs the model and maps the boxes back to the frame.
 */
class MediaPipeDetector(
    context: Context,
    modelAsset: String = "yolov7_tiny_int8_android.tflite",
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
        val result: ObjectDetectorResult = detector.detect(BitmapImageBuilder(bitmap).build())
        return result.detections().map { detection ->
            val category = detection.categories().first()
            Detection(
                box = detection.boundingBox(),
                label = category.categoryName(),
                score = category.score(),
            )
        }
    }

    override fun close() = detector.close()
}
