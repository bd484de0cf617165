"""Human in the loop: pick images of your own folder, export them for annotation, import the labels.

The benchmark simulates the annotator with the pool's ground truth; this package
closes the same loop with people:

- :mod:`.folder`: a COCO-like image list built from a folder of images, so the
  existing dataset class and every registered strategy work unchanged;
- :mod:`.select_images`: score the unlabeled images of a folder and choose a batch (or take a
  pipeline cycle's selection);
- :mod:`.export`: the annotation package of a selection (``selected.csv``,
  Label Studio tasks and labeling config, CVAT for images 1.1 XML, COCO
  predictions, a contact sheet);
- :mod:`.label_studio`, :mod:`.cvat`: the two annotation tools' formats; :mod:`.sheet`: the contact
  sheet; :mod:`.boxes`: the records they share;
- :mod:`.importer`: read an annotators' export back, validate it against the
  selection and merge it into the labeled COCO file (atomically, with a backup);
- :mod:`.simulate`: an annotator that answers with ground truth (walkthrough, tests).
"""
